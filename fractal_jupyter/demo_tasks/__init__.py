"""A small task package shipped with fractal_jupyter, for the demo and the tests.

Its tasks use only the standard library and follow Fractal's task contract
(`<python> <file> --args-json A --out-json B`). An "image" here is a folder with a
`meta.json` (a stand-in for an OME-Zarr image), so that the demo runs anywhere in seconds.
"""
