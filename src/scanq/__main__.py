from scanq.cli import main

main()
