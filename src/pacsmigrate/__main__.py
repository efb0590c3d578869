"""python -m pacsmigrate"""

from pacsmigrate.cli.main import main

main()
