from verif.fastpath import main

main()
