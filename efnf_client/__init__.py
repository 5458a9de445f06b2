"""A Python client and the ``efnf`` command line of the efnf REST API (HTTP only)."""

from efnf_client.client import Client, EfnfError

__all__ = ["Client", "EfnfError"]
