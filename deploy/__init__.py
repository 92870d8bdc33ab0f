"""Deployment tooling: the image (``python3 -m deploy.image``) and its engines.

Not installed with the package: run from a checkout. The CloudFormation
stack and the guide are beside this file.
"""
