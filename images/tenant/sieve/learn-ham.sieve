# vpes: ham training (imapsieve, imapsieve_mailbox2: COPY or MOVE out of Junk).
# Into Trash is deleting spam, not calling it ham: nothing is learned then.
# Otherwise the message goes to vpes-learn for the shared Rspamd's /learnham,
# for the user who moved it.
require ["vnd.dovecot.pipe", "copy", "imapsieve", "environment", "variables"];

if environment :is "imap.mailbox" ["Trash", "Junk"] {
    stop;
}
if environment :matches "imap.user" "*" {
    pipe :copy "vpes-learn" ["ham", "${1}"];
}
