from attest.cli.app import main

main()
