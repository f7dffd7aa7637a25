"""The papers' algorithms, written against driver interfaces only (never ``labrig.hw``)."""
