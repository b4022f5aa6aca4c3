from spanmeter.cli import main

main()
