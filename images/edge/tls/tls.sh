# vpes-edge's certificate, for every role (POSIX sh, sourced by vpes-edge;
# uses its say, die and is_count; images/README.md, "The edge's certificate").
#
# What the daemons serve is never read from the mounted Secret itself
# (/etc/vpes/tls/tls.crt and tls.key, which the kubelet replaces by swapping
# its `..data` link) but from a checked copy in /run/vpes/tls: tls.crt and
# tls.key for Dovecot, which reads them at start and reload, and chain.pem
# (the key, then the certificates: one file) for Postfix, whose smtpd reads
# it at every process start, so that one rename switches key and certificate
# together. A pair is copied only when tls_check finds it good: a
# certificate, an unencrypted key whose public key is the certificate's, not
# expired. Until a good pair is mounted a self-signed certificate for
# VPES_HOSTNAME (made once per pod: self.crt, self.key) is served.
#
# tls_watch, called from each role's loop, looks every VPES_TLS_POLL seconds
# (default 30) at a checksum of the mounted tls.crt and tls.key; when it
# changed (a renewal, or the first certificate: the Secret is optional) and
# the new pair is good, it is installed and tls_watch returns 0: the role
# reloads its daemon (Postfix: SIGHUP to master; Dovecot: SIGHUP, what
# `doveadm reload` sends). A bad pair is logged once, saying why, and the
# certificate in use stays. No key material is ever printed: only a
# certificate's subject, expiry and SHA-256 fingerprint.

TLS_LIVE=$RUN_DIR/tls
tls_cert=$TLS_LIVE/tls.crt
tls_key=$TLS_LIVE/tls.key
tls_chain=$TLS_LIVE/chain.pem
tls_poll=30
tls_next=0
tls_loaded_stamp=
tls_failed_stamp=

# A checksum of the mounted pair ("none" when neither file is there).
tls_stamp() {
	if [ -e "$TLS_DIR/tls.crt" ] || [ -e "$TLS_DIR/tls.key" ]; then
		cat "$TLS_DIR/tls.crt" "$TLS_DIR/tls.key" 2>/dev/null | sha256sum | cut -c1-64
	else
		echo none
	fi
}

# Checks a pair: $1 the certificate (its chain after it), $2 the key. Prints
# what is wrong, or nothing. openssl's own messages are dropped: they could
# quote the key's file.
tls_check() {
	[ -s "$1" ] || {
		echo "tls.crt is missing or empty"
		return
	}
	[ -s "$2" ] || {
		echo "tls.key is missing or empty"
		return
	}
	openssl x509 -in "$1" -noout 2>/dev/null || {
		echo "tls.crt holds no PEM certificate"
		return
	}
	tls_key_pub=$(openssl pkey -in "$2" -passin pass: -pubout 2>/dev/null) || {
		echo "tls.key holds no unencrypted PEM private key"
		return
	}
	[ "$tls_key_pub" = "$(openssl x509 -in "$1" -noout -pubkey 2>/dev/null)" ] || {
		echo "tls.key is not the key of the certificate in tls.crt (their public keys differ)"
		return
	}
	openssl x509 -in "$1" -noout -checkend 0 >/dev/null 2>&1 ||
		echo "the certificate in tls.crt expired ($(openssl x509 -in "$1" -noout -enddate 2>/dev/null))"
}

# One line about a certificate: subject, expiry, fingerprint.
tls_describe() {
	openssl x509 -in "$1" -noout -subject -enddate -fingerprint -sha256 2>/dev/null |
		sed 's/^sha256 Fingerprint=/sha256 /' | tr '\n' ',' | sed 's/,$//; s/,/, /g'
}

# Installs the pair $1 (certificate) and $2 (key) as the one served.
tls_install() {
	(
		umask 077
		awk 1 "$2" "$1" >"$tls_chain.new" &&
			cp "$1" "$tls_cert.new" && cp "$2" "$tls_key.new"
	) &&
		mv -f "$tls_key.new" "$tls_key" && mv -f "$tls_cert.new" "$tls_cert" &&
		mv -f "$tls_chain.new" "$tls_chain"
}

# Loads the mounted pair. Returns 0 when it is now served, 1 when it is not
# usable (said once per content), 2 when it was swapped while being read (the
# next look takes the new one), 3 when none is mounted.
tls_load() {
	tls_why=$1
	tls_s=$(tls_stamp)
	if [ "$tls_s" = none ]; then
		[ "$tls_why" = start ] || say "no certificate at $TLS_DIR any more: the one served stays"
		tls_loaded_stamp=$tls_s
		return 3
	fi
	tls_src=$TLS_DIR
	tls_data=$(readlink "$TLS_DIR/..data" 2>/dev/null) && tls_src=$TLS_DIR/$tls_data
	rm -f "$TLS_LIVE/new.crt" "$TLS_LIVE/new.key"
	if (umask 077 && cp "$tls_src/tls.crt" "$TLS_LIVE/new.crt" && cp "$tls_src/tls.key" "$TLS_LIVE/new.key") 2>/dev/null; then
		tls_problem=$(tls_check "$TLS_LIVE/new.crt" "$TLS_LIVE/new.key")
	else
		tls_problem="tls.crt and tls.key cannot both be read"
	fi
	if [ "$(tls_stamp)" != "$tls_s" ]; then
		rm -f "$TLS_LIVE/new.crt" "$TLS_LIVE/new.key"
		return 2
	fi
	if [ -n "$tls_problem" ]; then
		rm -f "$TLS_LIVE/new.crt" "$TLS_LIVE/new.key"
		if [ "$tls_s" != "$tls_failed_stamp" ]; then
			tls_failed_stamp=$tls_s
			if [ -s "$tls_cert" ]; then
				say "error: the certificate in $TLS_DIR is not used: $tls_problem; the one served stays: $(tls_describe "$tls_cert")"
			else
				say "error: the certificate in $TLS_DIR is not used: $tls_problem"
			fi
		fi
		return 1
	fi
	tls_install "$TLS_LIVE/new.crt" "$TLS_LIVE/new.key" || {
		rm -f "$TLS_LIVE/new.crt" "$TLS_LIVE/new.key"
		say "error: cannot write the certificate into $TLS_LIVE; the one served stays"
		return 1
	}
	rm -f "$TLS_LIVE/new.crt" "$TLS_LIVE/new.key"
	tls_loaded_stamp=$tls_s
	tls_failed_stamp=
	say "certificate loaded from $TLS_DIR ($tls_why): $(tls_describe "$tls_cert")"
	openssl x509 -in "$tls_cert" -noout -checkhost "$VPES_HOSTNAME" 2>/dev/null | grep -q 'does match' ||
		say "warning: the certificate does not name $VPES_HOSTNAME: clients that check it will refuse it"
	return 0
}

# The certificate every role serves at start: the mounted one when it is
# good, else the one of the previous start (a restarted container keeps its
# emptyDir), else a self-signed one for VPES_HOSTNAME.
edge_tls() {
	tls_poll=${VPES_TLS_POLL:-30}
	is_count "$tls_poll" && [ "$tls_poll" -gt 0 ] ||
		die "VPES_TLS_POLL=$tls_poll is not a number of seconds"
	(umask 077 && mkdir -p "$TLS_LIVE") || die "cannot write $TLS_LIVE (mount an emptyDir at $RUN_DIR)"
	tls_tries=0
	while :; do
		tls_load start
		tls_status=$?
		{ [ "$tls_status" = 2 ] && [ "$tls_tries" -lt 10 ]; } || break
		tls_tries=$((tls_tries + 1))
	done
	tls_next=$(($(date +%s) + tls_poll))
	[ "$tls_status" = 0 ] && return
	if [ -s "$tls_chain" ] && [ -s "$tls_cert" ] && [ -s "$tls_key" ]; then
		say "serving the certificate of the previous start: $(tls_describe "$tls_cert")"
		return
	fi
	if [ ! -s "$TLS_LIVE/self.crt" ] || [ ! -s "$TLS_LIVE/self.key" ]; then
		out=$(
			umask 077
			openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
				-days 3650 -subj "/CN=$VPES_HOSTNAME" -addext "subjectAltName=DNS:$VPES_HOSTNAME" \
				-keyout "$TLS_LIVE/self.key.new" -out "$TLS_LIVE/self.crt.new" 2>&1 &&
				mv -f "$TLS_LIVE/self.key.new" "$TLS_LIVE/self.key" &&
				mv -f "$TLS_LIVE/self.crt.new" "$TLS_LIVE/self.crt"
		) || die "cannot make a self-signed certificate in $TLS_LIVE: $out"
	fi
	tls_install "$TLS_LIVE/self.crt" "$TLS_LIVE/self.key" ||
		die "cannot write the certificate into $TLS_LIVE"
	say "serving a self-signed certificate for $VPES_HOSTNAME until a good one is mounted at $TLS_DIR (looked at every $tls_poll s)"
}

# Called from a role's loop: every VPES_TLS_POLL seconds, loads the mounted
# pair when its content changed. Returns 0 when a new certificate is now in
# place (reload the daemon), 1 otherwise.
tls_watch() {
	tls_now=$(date +%s)
	[ "$tls_now" -ge "$tls_next" ] || return 1
	tls_next=$((tls_now + tls_poll))
	tls_s=$(tls_stamp)
	{ [ "$tls_s" != "$tls_loaded_stamp" ] && [ "$tls_s" != "$tls_failed_stamp" ]; } || return 1
	tls_load changed
	case $? in
	0) return 0 ;;
	2) tls_next=$tls_now ;; # swapped while read: look again at the next turn
	esac
	return 1
}

# SIGHUP: look at the mounted pair at the next turn, even one refused before.
tls_rescan() {
	tls_failed_stamp=
	tls_next=0
}
