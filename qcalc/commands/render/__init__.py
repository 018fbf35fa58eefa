"""How results look: tables for people, json / jsonl / csv for machines. Imported only when a
command has something to print (numpy and rich load here, not at start-up)."""
