# The Sender Rewriting Scheme of the shared edge (images/README.md, "SRS").
# Sourced by vpes-edge (POSIX sh) for the roles relay and mx; uses its say,
# die and alive.
#
# Debian's postsrsd 1.10 answers two Postfix tcp_table lookups on loopback:
# 10001 rewrites a sender into the SRS domain (SRS0=hash=time=domain=user@
# VPES_SRS_DOMAIN), 10002 turns such an address back into the original when
# its hash verifies with the secret and it is at most 21 days old.
# - Role relay: sender_canonical_maps, envelope sender only. A sender in a
#   hosted domain (the maps' `senders`; reject_known_sender_login_mismatch
#   already limits each login to its own server's domains) and the null
#   sender are left alone; any other sender (forwarded mail) is rewritten.
# - Role mx: mail to <SRS0=...@VPES_SRS_DOMAIN> (a bounce to forwarded
#   mail) is accepted at RCPT only when postsrsd verifies it, and
#   recipient_canonical_maps gives it back its original recipient: a hosted
#   domain's goes to its tenant, any other out through VPES_RELAYHOST.
#
# Environment (both roles):
#   VPES_SRS_DOMAIN  the SRS domain (empty: no SRS): a domain whose MX (or
#                    A record) is the inbound MX and whose SPF covers the
#                    relay's outbound addresses
# The secret: /etc/vpes/srs/secret (a Secret, one secret a line: the first
# signs, every one verifies), read by postsrsd as root before it drops to
# the user postsrsd; never printed.

SRS_SECRET=/etc/vpes/srs/secret
SRS_FORWARD=127.0.0.1:10001
SRS_REVERSE=127.0.0.1:10002
srs_pid=

srs_enabled() {
	[ -n "${VPES_SRS_DOMAIN:-}" ]
}

# Refuses a domain or secret that cannot work (naming neither the secret nor
# its length).
srs_check() {
	srs_enabled || return 0
	case $VPES_SRS_DOMAIN in
	*[!a-z0-9.-]* | .* | *. | *..* | *.-* | *-.* | -*) die "VPES_SRS_DOMAIN=$VPES_SRS_DOMAIN is not a lower-case domain name" ;;
	*.*) ;;
	*) die "VPES_SRS_DOMAIN=$VPES_SRS_DOMAIN is not a fully qualified domain name" ;;
	esac
	[ -r "$SRS_SECRET" ] || die "VPES_SRS_DOMAIN is set but there is no $SRS_SECRET (mount the SRS Secret there)"
	first=$(head -n 1 "$SRS_SECRET" | tr -d '\r\n')
	[ "${#first}" -ge 16 ] || die "the first line of $SRS_SECRET is shorter than 16 characters (the SRS secret that signs)"
	first=
}

# main.cf lines of the role ($1: relay or mx).
srs_main_cf() {
	echo "# SRS (VPES_SRS_DOMAIN: ${VPES_SRS_DOMAIN:-none})."
	if ! srs_enabled; then
		[ "$1" = mx ] && printf 'vpes_srs_domain =\nvpes_srs_reverse =\nvpes_srs_transport =\n'
		return 0
	fi
	if [ "$1" = relay ]; then
		# Postfix asks every table with the whole address before any with
		# @domain: a hash keyed by @domain after tcp would never be reached.
		# So the first table is a pipe: a regexp gives the sender's domain,
		# srs-exclude (hosted domain → @domain) the same address again.
		echo "sender_canonical_maps = pipemap:{regexp:$POSTFIX_DIR/srs-domain, hash:/run/vpes/relay/current/srs-exclude}, tcp:$SRS_FORWARD"
		echo "sender_canonical_classes = envelope_sender"
	else
		echo "vpes_srs_domain = $VPES_SRS_DOMAIN"
		echo "vpes_srs_reverse = pipemap:{regexp:$POSTFIX_DIR/srs-reverse, tcp:$SRS_REVERSE}"
		echo "vpes_srs_transport = texthash:$POSTFIX_DIR/srs-transport"
	fi
}

# The relay's table: the sender's domain (srs-exclude's key).
srs_domain_table() {
	srs_enabled || return 0
	printf '/@([^@]+)$/\t${1}\n' >"$POSTFIX_DIR/srs-domain"
}

# The MX's tables: the guard (only <SRS0=...> and <SRS1=...> at the SRS
# domain are asked of postsrsd; case-insensitive, as regexp tables are) and
# the SRS domain's transport, which refuses every address that postsrsd did
# not verify (those it did are rewritten before any transport is chosen).
srs_reverse_table() {
	srs_enabled || return 0
	escaped=$(printf '%s' "$VPES_SRS_DOMAIN" | sed 's/\./\\./g')
	printf '/^(srs[01][-=+][^@]+@%s)$/\t${1}\n' "$escaped" >"$POSTFIX_DIR/srs-reverse" &&
		printf '%s\terror:5.1.1 not a valid SRS address (forged, expired or unknown)\n' \
			"$VPES_SRS_DOMAIN" >"$POSTFIX_DIR/srs-transport"
}

srs_start() {
	srs_enabled || return 0
	# postsrsd opens the secret and binds as root, then drops to its user
	# (setgid and setuid only: setpriv has cleared root's supplementary groups
	# first); it logs to syslog (none here) and, at start, to stderr.
	setpriv --clear-groups /usr/sbin/postsrsd -s "$SRS_SECRET" -d "$VPES_SRS_DOMAIN" -l 127.0.0.1 \
		-f "${SRS_FORWARD##*:}" -r "${SRS_REVERSE##*:}" -a = -n 4 -N 4 -u postsrsd </dev/null &
	srs_pid=$!
	# Postfix tempfails a lookup it cannot make: wait (at most 5 s) for the port.
	tries=0
	while [ "$tries" -lt 50 ] && alive "$srs_pid" && ! srs_listening; do
		sleep 0.1
		tries=$((tries + 1))
	done
	alive "$srs_pid" || die "postsrsd did not start (see the line above)"
	say "started postsrsd (pid $srs_pid) for $VPES_SRS_DOMAIN on $SRS_FORWARD and $SRS_REVERSE"
}

srs_listening() {
	# /proc/net/tcp: 0100007F:2711 is 127.0.0.1:10001, state 0A is LISTEN.
	grep -q ' 0100007F:2711 00000000:0000 0A ' /proc/net/tcp 2>/dev/null
}

srs_stop() {
	alive "$srs_pid" && kill -TERM "$srs_pid" 2>/dev/null
}
