"""The portal adapter (SPEC §6, DESIGN "Engines and the portal"): the narrow, read-only view of a
Bitrix24 portal's own database that `portal sync` and `portal status` use.

Nothing here imports a database driver at module level: a store without a portal never pays
for PyMySQL or psycopg2 (see docs/decisions.md for the measured costs).
"""
