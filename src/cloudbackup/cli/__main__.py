from cloudbackup.cli.root import main

main()
