from qunliao.cli import main

main()
