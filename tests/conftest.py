"""Test-suite settings shared by every test package."""

from hypothesis import settings

# Property-based tests draw the same examples on every machine and run (as hypothesis's own CI profile does):
# README's test command must give the same verdict everywhere. benchmarks/fuzz_api.py explores at random.
settings.register_profile("psfkit", derandomize=True, deadline=None, database=None, print_blob=True)
settings.load_profile("psfkit")
