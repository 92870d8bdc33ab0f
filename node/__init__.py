"""The cache node: an aiohttp server that owns part of the key space.

Start one with ``python -m node``; see ``node.cli`` for the sub-commands.
"""
