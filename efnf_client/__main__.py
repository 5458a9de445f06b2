"""``python -m efnf_client``: the ``efnf`` command line."""

from efnf_client.cli import main

if __name__ == "__main__":
    main()
