"""The staged generation loop and the role interfaces its models implement."""
