from apitoken_operator.cli import main

main()
