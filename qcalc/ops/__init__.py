"""Operations a user asks for (encode, check, inventory, hist), over readers and the core.

Each returns records and never prints; `qcalc.commands` renders them.
"""
