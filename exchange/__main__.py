from exchange.entry import main

main()
