# vpes: spam training (imapsieve, imapsieve_mailbox1: COPY, MOVE or APPEND into
# Junk). The message goes to vpes-learn, which queues it for the shared
# Rspamd's /learnspam with the user's address as Deliver-To (that user's own
# Bayes) and returns at once; :copy keeps the message where the user put it.
require ["vnd.dovecot.pipe", "copy", "imapsieve", "environment", "variables"];

if environment :matches "imap.user" "*" {
    pipe :copy "vpes-learn" ["spam", "${1}"];
}
