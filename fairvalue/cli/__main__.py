"""`python -m fairvalue.cli`: the `fairvalue` command run by the interpreter (`fairvalue up` starts its
API process so, and tests run the command in a subprocess so)."""

from fairvalue.cli import main

main()
