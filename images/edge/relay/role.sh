# vpes-edge relay: the outbound relay (tenants' relayhost, port 587).
# Sourced by vpes-edge (POSIX sh) for `vpes-edge relay`; uses its say, die,
# alive, is_count, with_tty, edge_tls and maps_stamp (images/README.md, "The
# edge image, role relay").
#
# 1. Writes Postfix's main.cf and master.cf (/run/vpes/postfix), Dovecot's
#    auth-only configuration and OpenDKIM's (/run/vpes/relay); the
#    certificate is a checked copy of the mounted one, else a self-signed
#    one (edge_tls, tls/tls.sh).
# 2. Builds one generation of the relay's files into /run/vpes/relay/gen.*
#    from one version of the maps (/etc/vpes/maps) and of the shard Secrets
#    (/etc/vpes/relay): vpes_relay_keys.py checks and writes them (senders,
#    transport, limits, held, users, OpenDKIM's KeyTables, keys and setup
#    scripts, srs-exclude), postmap compiles senders, transport and
#    srs-exclude; only a generation
#    that is good in every part replaces the link `current` (one rename).
# 3. Starts postsrsd when VPES_SRS_DOMAIN is set (srs.sh: forwarded mail's
#    sender is rewritten with SRS), Postfix's master, Dovecot (auth only),
#    two OpenDKIMs (rsa-sha256 on 8891, ed25519-sha256 on 8892: one algorithm
#    per instance) and the policy service (vpes_relay_server.py, as nobody:
#    the policy at RCPT and HTTP on 9146), each its own child.
# 4. Every VPES_MAPS_INTERVAL seconds looks at both volumes' `..data` links
#    and the maps' `version`; on a change builds a new generation and, when
#    it is good, switches to it and reloads Postfix (SIGHUP), OpenDKIM
#    (SIGUSR1) and Dovecot (SIGHUP: a fresh auth cache); the policy service
#    sees the link move. A bad generation leaves the last good one live and
#    is logged once. Also writes the queue's size for the metrics. Every
#    VPES_TLS_POLL seconds looks at the mounted certificate: a new good one
#    is put in place and Postfix reloaded (tls/tls.sh).
# 5. SIGTERM/SIGINT stops them all and exits 0; any of them dying on its own
#    exits 1. SIGHUP rebuilds.
#
# Environment:
#   VPES_HOSTNAME           myhostname, the self-signed certificate (required)
#   VPES_REDIS              host:port of the Redis that counts (required)
#   VPES_REDIS_PASSWORD     its password (optional)
#   VPES_MX_INTERNAL        where hosted domains' mail goes, the inbound MX's
#                           plain port, e.g. [mail-edge-mx-internal.vpes.svc]:2525
#                           (empty: hosted domains go out like any other)
#   VPES_RELAYHOST          a smarthost for all other mail (empty: direct
#                           delivery, MX lookup, port 25)
#   VPES_MESSAGE_SIZE_LIMIT bytes (default 52428800)
#   VPES_MAPS_INTERVAL      seconds between looks (default 2)
#   VPES_SRS_DOMAIN         rewrite forwarded mail's sender into this domain
#                           with SRS (srs.sh; empty: no SRS)
#   VPES_SPAM_MILTER        Rspamd's milter, e.g. inet:rspamd.vpes.svc:11332,
#                           first in smtpd_milters: outbound mail is scanned,
#                           a 5xx verdict refuses it and counts toward the
#                           server's spam hold (empty: not scanned)
#   VPES_SPAM_HOLD_THRESHOLD refused messages in the sliding hour that make
#                           /status say spam_hold (default 5; 0: never)

. "$SHARE/relay/srs.sh"

RELAY_SRC=/etc/vpes/relay
RELAY_DIR=$RUN_DIR/relay
RELAY_SHARE=$SHARE/relay
OPENDKIM=/usr/sbin/opendkim

relay_config() {
	[ -n "${VPES_HOSTNAME:-}" ] || die "VPES_HOSTNAME is not set (the relay's name: its banner and certificate)"
	case $VPES_HOSTNAME in
	*.*) ;;
	*) die "VPES_HOSTNAME=$VPES_HOSTNAME is not a fully qualified domain name" ;;
	esac
	size=${VPES_MESSAGE_SIZE_LIMIT:-52428800}
	is_count "$size" || die "VPES_MESSAGE_SIZE_LIMIT=$size is not a number of bytes"
	case ${VPES_REDIS:-} in
	?*:[0-9]*) ;;
	*) die "VPES_REDIS='${VPES_REDIS:-}' is not host:port (the Redis that counts every server's recipients)" ;;
	esac
	for v in "${VPES_MX_INTERNAL:-}" "${VPES_RELAYHOST:-}"; do
		case $v in *[!A-Za-z0-9.:\[\]-]*) die "'$v' is not a Postfix next hop ([host]:port)" ;; esac
	done
	case ${VPES_SPAM_MILTER:-} in
	'') ;;
	*[!A-Za-z0-9.:\[\]-]* | *:) die "VPES_SPAM_MILTER='$VPES_SPAM_MILTER' is not a milter address (inet:host:port)" ;;
	inet:*:[0-9]*) ;;
	*) die "VPES_SPAM_MILTER='$VPES_SPAM_MILTER' is not a milter address (inet:host:port)" ;;
	esac
	is_count "${VPES_SPAM_HOLD_THRESHOLD:-5}" ||
		die "VPES_SPAM_HOLD_THRESHOLD=$VPES_SPAM_HOLD_THRESHOLD is not a number of messages"
	srs_check
	mkdir -p "$POSTFIX_DIR" "$RELAY_DIR" || die "cannot write $RUN_DIR (mount an emptyDir there)"
	edge_tls
	{
		cat "$RELAY_SHARE/main.cf"
		echo
		echo "# From the environment (vpes-edge relay)."
		echo "myhostname = $VPES_HOSTNAME"
		echo "message_size_limit = $size"
		echo "queue_minfree = $((size * 3 / 2))"
		echo "smtpd_tls_chain_files = $tls_chain"
		echo "relayhost = ${VPES_RELAYHOST:-}"
		echo "smtpd_milters = ${VPES_SPAM_MILTER:+$VPES_SPAM_MILTER, }inet:127.0.0.1:8891, inet:127.0.0.1:8892"
		srs_main_cf relay
	} >"$POSTFIX_DIR/main.cf.new" &&
		srs_domain_table &&
		cp "$RELAY_SHARE/master.cf" "$POSTFIX_DIR/master.cf.new" &&
		mv -f "$POSTFIX_DIR/main.cf.new" "$POSTFIX_DIR/main.cf" &&
		mv -f "$POSTFIX_DIR/master.cf.new" "$POSTFIX_DIR/master.cf" &&
		cp "$RELAY_SHARE/dovecot.conf" "$RELAY_DIR/dovecot.conf" &&
		sed 's/KIND/rsa/g; s/PORT/8891/' "$RELAY_SHARE/opendkim.conf" >"$RELAY_DIR/opendkim-rsa.conf" &&
		sed 's/KIND/ed25519/g; s/PORT/8892/' "$RELAY_SHARE/opendkim.conf" >"$RELAY_DIR/opendkim-ed25519.conf" ||
		die "cannot write the configuration in $RUN_DIR"
	out=$(doveconf -c "$RELAY_DIR/dovecot.conf" -n 2>&1 >/dev/null) ||
		die "Dovecot refuses its configuration: $out"
	[ -n "${VPES_MX_INTERNAL:-}" ] && say "hosted domains' mail goes to $VPES_MX_INTERNAL" ||
		say "VPES_MX_INTERNAL is not set: hosted domains' mail goes out like any other"
	[ -n "${VPES_SPAM_MILTER:-}" ] && say "antispam: $VPES_SPAM_MILTER judges every message (4xx while it does not answer); ${VPES_SPAM_HOLD_THRESHOLD:-5} refused in an hour hold a server (0: never)" ||
		say "VPES_SPAM_MILTER is not set: outbound mail is not scanned"
}

relay_stamp() {
	printf '%s %s' "$(maps_stamp)" "$(readlink "$RELAY_SRC/..data" 2>/dev/null)"
}

# One version of a kubelet volume: through its ..data link when it has one.
volume_src() {
	data=$(readlink "$1/..data" 2>/dev/null) && echo "$1/$data" || echo "$1"
}

# Builds a generation in $1. Prints why it cannot be used, or nothing.
relay_compile() {
	gen=$1
	out=$(python3 "$RELAY_SHARE/vpes_relay_keys.py" "$(volume_src "$MAPS_DIR")" \
		"$(volume_src "$RELAY_SRC")" "$gen" "${VPES_MX_INTERNAL:-}" 2>&1) || {
		echo "${out:-vpes_relay_keys.py failed}" | head -n 1
		return
	}
	for f in senders transport srs-exclude; do
		if out=$(with_tty "postmap hash:$gen/$f"); then
			out=$(printf '%s\n' "$out" | grep -F "$gen/$f")
		else
			out=$(printf '%s\n' "$out" | grep -m 1 -E 'fatal|error' || printf '%s\n' "$out" | head -n 1)
			out=${out:-postmap failed}
		fi
		if [ -n "$out" ]; then
			echo "$f: $(printf '%s\n' "$out" | head -n 1)"
			return
		fi
	done
	chown -R opendkim:opendkim "$gen/keys" && chgrp dovecot "$gen/users" && chmod 0640 "$gen/users" ||
		echo "cannot set the owners of $gen/keys and $gen/users"
}

relay_version() {
	cat "$RELAY_DIR/current/version" 2>/dev/null
}

# Like load_maps (mx): 0 switched, 1 not usable (said once), 2 swapped while read.
relay_load() {
	why=$1
	stamp=$(relay_stamp)
	generation=$((generation + 1))
	gen=gen.$(date +%s).$generation
	problem=$(relay_compile "$RELAY_DIR/$gen")
	if [ "$(relay_stamp)" != "$stamp" ]; then
		rm -rf "${RELAY_DIR:?}/$gen"
		return 2
	fi
	if [ -n "$problem" ]; then
		rm -rf "${RELAY_DIR:?}/$gen"
		if [ "$stamp" != "$failed_stamp" ]; then
			failed_stamp=$stamp
			live=$(relay_version) && live="the last good ones, version $live, stay live" || live="nothing is live"
			say "error: maps version $(cat "$MAPS_DIR/version" 2>/dev/null || echo '(none)') and relay keys not loaded ($live): $problem"
		fi
		return 1
	fi
	previous=$(readlink "$RELAY_DIR/current" 2>/dev/null)
	ln -sfn "$gen" "$RELAY_DIR/current.new" && mv -fT "$RELAY_DIR/current.new" "$RELAY_DIR/current" || {
		say "error: cannot switch $RELAY_DIR/current to $gen"
		return 1
	}
	for old in "$RELAY_DIR"/gen.*; do
		name=${old##*/}
		[ -e "$old" ] && [ "$name" != "$gen" ] && [ "$name" != "$previous" ] && rm -rf "$old"
	done
	loaded_stamp=$stamp
	failed_stamp=
	version=$(relay_version)
	printf '%s\n' "$version" >"$VERSION_FILE.new" && mv -f "$VERSION_FILE.new" "$VERSION_FILE"
	say "maps version $version loaded ($why): $(grep -c . "$RELAY_DIR/current/senders") senders, $(grep -c . "$RELAY_DIR/current/limits") limits, $(grep -c . "$RELAY_DIR/current/held") held, $(grep -c . "$RELAY_DIR/current/users") users, $(cat "$RELAY_DIR/current/keytable-"* | grep -c .) DKIM keys"
	return 0
}

dovecot_pid=
opendkim_pid=
opendkim_ed_pid=
policy_pid=

relay_stop() {
	stopping=1
	say "$1: stopping Postfix, Dovecot, OpenDKIM, the policy service and postsrsd"
	for pid in "$master_pid" "$dovecot_pid" "$opendkim_pid" "$opendkim_ed_pid" "$policy_pid" "$srs_pid" "$sleep_pid"; do
		alive "$pid" && kill -TERM "$pid" 2>/dev/null
	done
}

relay_refresh() {
	relay_load "$1" || return
	alive "$master_pid" && kill -HUP "$master_pid"
	alive "$opendkim_pid" && kill -USR1 "$opendkim_pid"
	alive "$opendkim_ed_pid" && kill -USR1 "$opendkim_ed_pid"
	alive "$dovecot_pid" && kill -HUP "$dovecot_pid"
}

relay_queue() {
	n=$(find /var/spool/postfix/incoming /var/spool/postfix/active /var/spool/postfix/deferred \
		/var/spool/postfix/hold -type f 2>/dev/null | wc -l)
	printf '%s\n' "$n" >"$RELAY_DIR/queue-messages.new" && mv -f "$RELAY_DIR/queue-messages.new" "$RELAY_DIR/queue-messages"
}

relay_start() {
	srs_start
	postfix_start relay
	dovecot -F -c "$RELAY_DIR/dovecot.conf" &
	dovecot_pid=$!
	"$OPENDKIM" -f -x "$RELAY_DIR/opendkim-rsa.conf" &
	opendkim_pid=$!
	"$OPENDKIM" -f -x "$RELAY_DIR/opendkim-ed25519.conf" &
	opendkim_ed_pid=$!
	PYTHONDONTWRITEBYTECODE=1 VPES_RELAY_GEN=$RELAY_DIR setpriv --reuid=65534 --regid=65534 \
		--clear-groups --inh-caps=-all python3 "$RELAY_SHARE/vpes_relay_server.py" &
	policy_pid=$!
	say "started Postfix (pid $master_pid), Dovecot (pid $dovecot_pid), OpenDKIM (pids $opendkim_pid $opendkim_ed_pid) and the policy service (pid $policy_pid) as $VPES_HOSTNAME: SMTP with STARTTLS and AUTH on 587, status on 9146"
}

run_relay() {
	interval=${VPES_MAPS_INTERVAL:-2}
	relay_config
	tries=0
	while :; do
		relay_load "start"
		status=$?
		{ [ "$status" = 2 ] && [ "$tries" -lt 10 ]; } || break
		tries=$((tries + 1))
	done
	if [ "$status" != 0 ]; then
		[ -e "$RELAY_DIR/current/version" ] || die "no usable maps in $MAPS_DIR and $RELAY_SRC (see the line above)"
		say "serving the generation of the previous start, version $(relay_version)"
	fi
	out=$(with_tty "postfix check") || die "postfix check failed: $(printf '%s\n' "$out" | grep -E 'fatal|error' || printf '%s\n' "$out" | tail -n 3)"
	out=$(printf '%s\n' "$out" | grep -v 'symlink leaves directory: /etc/postfix/\./ma[a-z]*\.cf$')
	[ -z "$out" ] || say "postfix check: $out"
	relay_queue

	trap 'relay_stop "SIGTERM received"' TERM
	trap 'relay_stop "SIGINT received"' INT
	trap 'failed_stamp=; tls_rescan; relay_refresh "SIGHUP received"' HUP
	relay_start

	while :; do
		sleep "$interval" &
		sleep_pid=$!
		wait "$sleep_pid"
		sleep_pid=
		if [ "$stopping" = 1 ]; then
			wait
			say "stopped"
			exit 0
		fi
		for pair in "Postfix:$master_pid" "Dovecot:$dovecot_pid" "OpenDKIM:$opendkim_pid" "OpenDKIM ed25519:$opendkim_ed_pid" "the policy service:$policy_pid" "the metrics exporter:$metrics_pid" "postsrsd:$srs_pid"; do
			pid=${pair##*:}
			[ -z "$pid" ] && [ "${pair%:*}" = postsrsd ] && continue
			if ! alive "$pid"; then
				wait "$pid"
				status=$?
				relay_stop "${pair%:*} exited on its own (status $status)"
				wait
				say "error: ${pair%:*} exited on its own (status $status); exiting so that the container is restarted"
				exit 1
			fi
		done
		now=$(relay_stamp)
		if [ "$now" != "$loaded_stamp" ] && [ "$now" != "$failed_stamp" ]; then
			relay_refresh "changed"
		fi
		# Only Postfix serves the certificate (Dovecot here is auth only).
		if tls_watch && alive "$master_pid"; then
			kill -HUP "$master_pid" && say "reloaded Postfix: new sessions get the new certificate"
		fi
		relay_queue
	done
}
