from qcalc.cli import main

main()
