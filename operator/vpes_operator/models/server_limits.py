"""How much one PersonalMailServer may hold: the bounds of its spec (and of the
status lists that follow it)."""

MAX_DOMAINS = 100
MAX_MAILBOXES = 1000
MAX_ALIASES = 50
MAX_FORWARDS = 200
MAX_FORWARD_TARGETS = 10
# The API server checks each catch-all's target against every mailbox (CEL):
# with 100 catch-alls that rule would exceed its cost budget.
MAX_CATCH_ALLS = 50
MAX_PANEL_ADMINS = 20
# Vacation replies: all of a server's go into one Sieve script in the tenant
# ConfigMap (at most 1 MiB with everything else): at most this many are on at once.
MAX_VACATIONS = 50
MAX_VACATION_SUBJECT = 200
MAX_VACATION_MESSAGE = 4000
MAX_VACATION_DAYS = 30
