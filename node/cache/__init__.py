"""The node's memory: the store, the near cache and the frequency sketch.

Pure and synchronous: nothing here does I/O or imports another part of the
node, so each module can be read and tested on its own.
"""
