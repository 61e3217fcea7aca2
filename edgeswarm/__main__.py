from edgeswarm.cli.app import main

main()
