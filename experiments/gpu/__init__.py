"""Part 4: the paper's full-scale runs (Rotation MNIST, augmented CIFAR-10) through the service.

``prepare`` turns the public files into uploadable ``.npz`` data sets (no pickle: the MNIST-rot
``.amat`` text files and CIFAR-10's *binary* version), ``payloads/`` holds the job bodies for
``POST /v1/jobs`` and ``submit`` uploads a data set and submits jobs; see ``README.md`` here.
"""
