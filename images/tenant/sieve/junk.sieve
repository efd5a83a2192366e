# vpes: the edge's spam verdict. Dovecot runs this before the user's own script
# (sieve_before, on plans whose antispam level is not Off): mail carrying the
# header Rspamd's milter adds at the edge's MX ("X-Spam: Yes") is filed into
# Junk, and `stop` ends the whole sequence, so no script of the user's can move
# it back to INBOX. The header is the edge's own: the MX drops any X-Spam header
# a sender wrote, and the tenant drops it on every listener but port 25.
# Compiled into junk.svbin when the image is built (its root is read-only).
require ["fileinto", "mailbox"];

if header :is "X-Spam" "Yes" {
    fileinto :create "Junk";
    stop;
}
