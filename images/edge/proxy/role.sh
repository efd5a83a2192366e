# vpes-edge proxy: the login proxy (IMAP, POP3, ManageSieve, submission).
# Sourced by vpes-edge (POSIX sh) for `vpes-edge proxy`; uses its say, die,
# alive, is_count, edge_tls and maps_stamp (images/README.md, "The edge
# image, role proxy").
#
# 1. Writes Dovecot's configuration to /run/vpes/proxy/dovecot.conf: the
#    fixed part (/usr/local/share/vpes-edge/proxy/dovecot.conf) plus the
#    host name, the certificate (mounted, else self-signed: edge_tls) and
#    the networks whose PROXY headers are believed.
# 2. Checks the operator's `proxy` map (a Dovecot passwd-file keyed by
#    domain) and copies it to /run/vpes/proxy/passwd, the passdb.
# 3. Starts `dovecot -F` as its own child; every VPES_MAPS_INTERVAL seconds
#    looks at the ConfigMap's `..data` link and `version`; when the proxy map's
#    content changed and it is good, swaps it in (one rename, with an mtime
#    newer than the old file's). Dovecot is not reloaded: its auth process
#    re-reads the file at the next login, proxied sessions stay up. A bad map
#    leaves the last good one live and is logged once per version.
#    Every VPES_TLS_POLL seconds looks at the mounted certificate (tls/tls.sh):
#    a new good one is put in place and Dovecot's config process reads it
#    again (proxy_reread_tls: no reload, which would close proxied sessions),
#    so that new connections get it; a bad one is logged and the one in use
#    stays.
# 4. SIGTERM/SIGINT stops Dovecot and exits 0; Dovecot dying on its own exits
#    1. SIGHUP re-reads the map and looks at the certificate again.
#
# Environment:
#   VPES_HOSTNAME          the proxy's name: greetings, the self-signed
#                          certificate (required, a FQDN)
#   VPES_PROXY_TRUSTED     haproxy_trusted_networks: who may send a PROXY
#                          header on the standard ports (default: everyone,
#                          "0.0.0.0/0 ::/0", as postscreen on the MX's 25: the
#                          NetworkPolicy decides who reaches those ports)
#   VPES_MAPS_INTERVAL     seconds between looks at the map (default 2)

PROXY_DIR=$RUN_DIR/proxy
PROXY_CONF=$PROXY_DIR/dovecot.conf
PROXY_PASSWD=$PROXY_DIR/passwd
DOVECOT=/usr/sbin/dovecot

proxy_config() {
	[ -n "${VPES_HOSTNAME:-}" ] || die "VPES_HOSTNAME is not set (the proxy's name: its greetings and certificate)"
	case $VPES_HOSTNAME in
	*.*) ;;
	*) die "VPES_HOSTNAME=$VPES_HOSTNAME is not a fully qualified domain name" ;;
	esac
	trusted=${VPES_PROXY_TRUSTED:-0.0.0.0/0 ::/0}
	case $trusted in
	*[!0-9a-fA-F.:/\ ]*) die "VPES_PROXY_TRUSTED=$trusted is not a list of addresses or networks" ;;
	esac
	mkdir -p "$PROXY_DIR" || die "cannot write $PROXY_DIR (mount an emptyDir at $RUN_DIR)"
	edge_tls
	{
		cat "$SHARE/proxy/dovecot.conf"
		echo
		echo "# From the environment (vpes-edge)."
		echo "hostname = $VPES_HOSTNAME"
		echo "ssl_cert = <$tls_cert"
		echo "ssl_key = <$tls_key"
		echo "haproxy_trusted_networks = $trusted"
		# The same certificate for every client address, in `remote` blocks so
		# that each new connection asks the config process for it (see
		# proxy_reread_tls; /0 does not count as a filter, two halves do).
		for net in 0.0.0.0/1 128.0.0.0/1 ::/1 8000::/1; do
			printf 'remote %s {\n  ssl_cert = <%s\n  ssl_key = <%s\n}\n' "$net" "$tls_cert" "$tls_key"
		done
	} >"$PROXY_CONF.new" && mv -f "$PROXY_CONF.new" "$PROXY_CONF" ||
		die "cannot write Dovecot's configuration in $PROXY_DIR"
	out=$(doveconf -c "$PROXY_CONF" -n 2>&1 >/dev/null) ||
		die "Dovecot refuses its configuration: $out"
	[ -z "$out" ] || say "doveconf: $out"
}

# Checks a proxy map (a passwd-file keyed by domain, the operator's lines
# `example.com:::::::proxy=y host=<tenant Service> nopassword=y`). Prints
# what is wrong with the first bad line, or nothing.
proxy_check_map() {
	awk '
	function bad(why) { printf "line %d: %s\n", NR, why; exit }
	/^[ \t]*(#|$)/ { next }
	{
		i = index($0, ":")
		if (i == 0 || substr($0, i, 7) != ":::::::" || substr($0, i + 7, 1) == ":") {
			bad("expected domain:::::::fields (user, password, uid, gid, gecos, home, shell, then the fields), got \"" $0 "\"")
		}
		domain = substr($0, 1, i - 1)
		if (domain !~ /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/)
			bad("\"" domain "\" is not a lower-case domain name")
		if (domain in seen) bad(domain " is listed twice")
		seen[domain] = 1
		n = split(substr($0, i + 7), f, " ")
		proxy = host = nopassword = 0
		for (j = 1; j <= n; j++) {
			k = f[j]; sub(/=.*/, "", k); v = substr(f[j], length(k) + 2)
			if (k == "proxy" && v == "y") proxy = 1
			else if (k == "host" && v ~ /^[A-Za-z0-9.:-]+$/) host = 1
			else if (k == "nopassword" && v == "y") nopassword = 1
			else if (k == "hostip" && v ~ /^[0-9a-fA-F.:]+$/) continue
			else if (k == "port" && v ~ /^[0-9]+$/) continue
			else bad(domain ": field \"" f[j] "\" is not one of proxy=y, host=NAME, nopassword=y, hostip=IP, port=N")
		}
		if (!(proxy && host && nopassword)) bad(domain ": needs proxy=y host=<tenant Service> nopassword=y")
	}' "$1"
}

proxy_loaded_stamp=
proxy_failed_stamp=

# Checks the mounted proxy map and, when its content differs from the live
# one, swaps it in. Returns 0 when it changed, 1 when it is
# unusable (said once per version), 3 when nothing changed; 2 when the maps
# were swapped while being read (the next look takes the new ones).
proxy_load_map() {
	why=$1
	stamp=$(maps_stamp)
	src=$MAPS_DIR
	data=$(readlink "$MAPS_DIR/..data" 2>/dev/null) && src=$MAPS_DIR/$data
	version=$(cat "$src/version" 2>/dev/null) || version=${data:-unversioned}
	version=${version:-unversioned}
	if [ ! -e "$src/proxy" ]; then
		problem="proxy: missing from $MAPS_DIR"
	elif ! cp "$src/proxy" "$PROXY_PASSWD.new" 2>/dev/null; then
		problem="proxy: cannot be read"
	else
		problem=$(proxy_check_map "$PROXY_PASSWD.new")
		[ -z "$problem" ] || problem="proxy: $problem"
	fi
	if [ "$(maps_stamp)" != "$stamp" ]; then
		rm -f "$PROXY_PASSWD.new"
		return 2
	fi
	if [ -n "$problem" ]; then
		rm -f "$PROXY_PASSWD.new"
		if [ "$stamp" != "$proxy_failed_stamp" ]; then
			proxy_failed_stamp=$stamp
			live=$(cat "$PROXY_DIR/version" 2>/dev/null) && live="the last good map, version $live, stays live" || live="no map is live"
			say "error: maps version $version not loaded ($live): $problem"
		fi
		return 1
	fi
	proxy_loaded_stamp=$stamp
	proxy_failed_stamp=
	status=3
	if ! cmp -s "$PROXY_PASSWD.new" "$PROXY_PASSWD"; then
		# Dovecot's auth process re-reads the file when its mtime (seconds)
		# or size changed: never give a new map the old one's mtime.
		old=$(stat -c %Y "$PROXY_PASSWD" 2>/dev/null || echo 0)
		now=$(date +%s)
		[ "$now" -gt "$old" ] || now=$((old + 1))
		touch -d "@$now" "$PROXY_PASSWD.new" &&
			chmod 0644 "$PROXY_PASSWD.new" && mv -f "$PROXY_PASSWD.new" "$PROXY_PASSWD" || {
			say "error: cannot write $PROXY_PASSWD"
			return 1
		}
		status=0
	fi
	rm -f "$PROXY_PASSWD.new"
	printf '%s\n' "$version" >"$PROXY_DIR/version.new" && mv -f "$PROXY_DIR/version.new" "$PROXY_DIR/version"
	cp "$PROXY_DIR/version" "$VERSION_FILE"
	if [ "$status" = 0 ]; then
		say "maps version $version loaded ($why): $(grep -c -v -E '^[[:space:]]*(#|$)' "$PROXY_PASSWD") proxied domains"
	fi
	return "$status"
}

proxy_stopping=0
dovecot_pid=
proxy_sleep_pid=

proxy_stop() {
	proxy_stopping=1
	say "$1: stopping Dovecot"
	alive "$dovecot_pid" && kill -TERM "$dovecot_pid" 2>/dev/null
	alive "$proxy_sleep_pid" && kill -TERM "$proxy_sleep_pid" 2>/dev/null
}

# No reload: Dovecot's auth process reads the new passwd-file at the next
# login (it looks at its mtime and size on every lookup). A reload (SIGHUP,
# doveadm reload) would close the proxied sessions of the old login processes
# (tried: the client got EOF).
proxy_refresh() {
	proxy_load_map "$1"
}

# A new certificate without a reload. Dovecot's config process reads
# ssl_cert and ssl_key (`<file`) when it parses dovecot.conf; a reload
# (SIGHUP, doveadm reload) would make it parse again, but also makes every
# old login process close its proxied sessions once they idle for 2 s (Dovecot
# 2.3, login_die: the clients' IMAP IDLE sessions would all drop). Instead the
# config process alone is asked to parse again, with the request the master
# sends it on a reload (REQ module=master on its socket); the login processes
# ask it for their settings at each new connection (the `remote` blocks in
# proxy_config keep them from caching), so new connections get the new
# certificate and proxied sessions stay where they are. Prints why it failed,
# or nothing.
proxy_reread_tls() {
	python3 - "$RUN_DIR/dovecot/config" <<-'EOF' 2>&1
		import socket, sys
		s = socket.socket(socket.AF_UNIX)
		s.settimeout(20)
		s.connect(sys.argv[1])
		s.sendall(b"VERSION\tconfig\t2\t0\nREQ\tmodule=master\n")
		s.shutdown(socket.SHUT_WR)
		out = b""
		while chunk := s.recv(65536):
		    out += chunk
		for line in out.decode(errors="replace").splitlines():
		    if line.startswith("ERROR "):
		        sys.exit(line)
		if not out.endswith(b"\n\n"):
		    sys.exit("no complete answer from the config process")
	EOF
}

run_proxy() {
	interval=${VPES_MAPS_INTERVAL:-2}
	is_count "$interval" || die "VPES_MAPS_INTERVAL=$interval is not a number of seconds"
	proxy_config
	tries=0
	while :; do
		proxy_load_map "start"
		status=$?
		{ [ "$status" = 2 ] && [ "$tries" -lt 10 ]; } || break
		tries=$((tries + 1))
	done
	if [ "$status" = 1 ] || [ "$status" = 2 ]; then
		# A restarted container keeps its emptyDir: the last good map serves.
		[ -e "$PROXY_DIR/version" ] || die "no usable proxy map in $MAPS_DIR (see the line above)"
		say "serving the map of the previous start, version $(cat "$PROXY_DIR/version")"
		cp "$PROXY_DIR/version" "$VERSION_FILE"
	fi

	trap 'proxy_stop "SIGTERM received"' TERM
	trap 'proxy_stop "SIGINT received"' INT
	trap 'proxy_failed_stamp=; tls_rescan; proxy_refresh "SIGHUP received"' HUP

	"$DOVECOT" -F -c "$PROXY_CONF" &
	dovecot_pid=$!
	say "started Dovecot (pid $dovecot_pid) as $VPES_HOSTNAME: PROXY protocol on 143, 993, 110, 995, 4190, 587, 465; plain on 20143, 20110, 24190, 20587"

	while :; do
		sleep "$interval" &
		proxy_sleep_pid=$!
		wait "$proxy_sleep_pid"
		proxy_sleep_pid=
		if [ "$proxy_stopping" = 1 ]; then
			wait
			say "stopped"
			exit 0
		fi
		if ! alive "$dovecot_pid"; then
			wait "$dovecot_pid"
			status=$?
			say "error: Dovecot exited on its own (status $status); exiting so that the container is restarted"
			exit 1
		fi
		now=$(maps_stamp)
		if [ "$now" != "$proxy_loaded_stamp" ] && [ "$now" != "$proxy_failed_stamp" ]; then
			proxy_refresh "changed"
		fi
		if tls_watch && alive "$dovecot_pid"; then
			if out=$(proxy_reread_tls); then
				say "Dovecot's config process read the new certificate: new connections get it, proxied sessions go on"
			else
				say "error: Dovecot's config process did not read the new certificate ($(printf '%s\n' "$out" | tail -n 1)): reloading Dovecot (proxied sessions are closed)"
				kill -HUP "$dovecot_pid"
			fi
		fi
	done
}
