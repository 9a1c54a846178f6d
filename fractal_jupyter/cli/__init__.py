"""`jupyter fractal status|jobs|db upgrade|collect`: the command line of fractal_jupyter.

One module per command; `base` holds what they share (the command line, the exit codes,
finding the running server, turning the client's errors into messages and exit codes).
"""
