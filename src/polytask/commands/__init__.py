"""Sub-commands of ``polytask`` that live in their own module, one per file.

Each module defines ``COMMAND``: the function typer turns into the sub-command named after the
module (its docstring is the help text, its annotated parameters the options). A module imports
only typer and the standard library at the top, so ``polytask --help`` stays fast; the work is
imported inside the function. ``polytask.cli`` registers every module found here: adding a
command is adding a file.
"""
