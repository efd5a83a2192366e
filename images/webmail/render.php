<?php
// render.php: vpes-webmail's first step (php-cli, as www-data). Reads the
// environment, refuses what is wrong with one line naming the variable (exit
// 2), and writes into /run/vpes-webmail (0700, files 0600: the database
// password and the des_key are in them):
//   config.inc.php   Roundcube's settings (/etc/roundcube/config.inc.php
//                    includes it); values written with var_export, so no value
//                    can break out of its string
//   php-fpm-pool.conf  the pool, with the upload limits
//   nginx-limits.conf  client_max_body_size, agreeing with PHP's limits
// Nothing read here is logged.

const RUN = '/run/vpes-webmail';
const TMP = '/tmp/vpes-webmail';

function fail(string $msg): never
{
    fwrite(STDERR, "vpes-webmail: error: $msg\n");
    exit(2);
}

function env(string $name, ?string $default = null): string
{
    $v = getenv($name);
    if ($v === false || $v === '') {
        if ($default === null) {
            fail("$name is not set");
        }
        return $default;
    }
    return $v;
}

// host: ssl://name:port or tls://name:port (the edge's login proxy and
// submission port; Roundcube speaks TLS from the start with ssl://, STARTTLS
// with tls://).
// A server address with TLS: ssl:// (TLS from the start) or tls:// (STARTTLS), as
// `schemes` allows; never plain, so that no password crosses in the clear.
function host(string $name, string ...$schemes): string
{
    $v = env($name);
    if (!preg_match('#^(' . implode('|', $schemes) . ')://[A-Za-z0-9.-]+:[0-9]{1,5}$#', $v)) {
        $shapes = implode(' or ', array_map(fn ($s) => "$s://host:port", $schemes));
        fail("$name must look like $shapes, not " . json_encode($v));
    }
    return $v;
}

function settings(): array
{
    $dsn = env('VPES_WEBMAIL_DB_DSN');
    if (!preg_match('#^pgsql://[^:@/]+:[^@/]+@[A-Za-z0-9.-]+(:[0-9]+)?/[A-Za-z0-9_]+$#', $dsn)) {
        // Not the value itself: it holds the password.
        fail('VPES_WEBMAIL_DB_DSN must look like pgsql://user:password@host:5432/roundcube');
    }
    $des = env('VPES_WEBMAIL_DES_KEY');
    if (strlen($des) !== 24) {
        fail('VPES_WEBMAIL_DES_KEY must be exactly 24 characters, not ' . strlen($des));
    }
    $verify = env('VPES_WEBMAIL_TLS_VERIFY', '1');
    if ($verify !== '0' && $verify !== '1') {
        fail('VPES_WEBMAIL_TLS_VERIFY must be 1 or 0, not ' . json_encode($verify));
    }
    // 0 only while the edge still has its self-signed bootstrap certificate (the
    // chart says so); 1 verifies the edge's certificate against the system's CAs or
    // VPES_WEBMAIL_TLS_CA, and its name: VPES_WEBMAIL_TLS_PEER_NAME, else the host
    // connected to.
    $ssl = $verify === '1'
        ? ['verify_peer' => true, 'verify_peer_name' => true]
        : ['verify_peer' => false, 'verify_peer_name' => false, 'allow_self_signed' => true];
    $peer = env('VPES_WEBMAIL_TLS_PEER_NAME', '-');
    if ($peer !== '-') {
        $label = '[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
        if (strlen($peer) > 253 || !preg_match("/^$label(\\.$label)*\\.?$/D", $peer)) {
            fail('VPES_WEBMAIL_TLS_PEER_NAME must be a DNS name (the name the edge\'s certificate '
                . 'carries, e.g. imap.example.net), not ' . json_encode($peer));
        }
        if ($verify !== '1') {
            fail('VPES_WEBMAIL_TLS_PEER_NAME is set but VPES_WEBMAIL_TLS_VERIFY is 0: nothing would '
                . 'check the name; set VPES_WEBMAIL_TLS_VERIFY=1 or leave the name out');
        }
        // The proxy is reached by its in-cluster Service name, which its certificate
        // does not carry: PHP checks this name instead (and sends it as SNI).
        $ssl['peer_name'] = rtrim($peer, '.');
    }
    $ca = env('VPES_WEBMAIL_TLS_CA', '-');
    if ($ca !== '-') {
        if (!is_readable($ca)) {
            fail("VPES_WEBMAIL_TLS_CA: $ca is not a readable file");
        }
        $ssl['cafile'] = $ca;
    }
    $domains = env('VPES_WEBMAIL_DOMAINS', '/etc/vpes/webmail/domains');
    $password_url = env('VPES_WEBMAIL_PASSWORD_URL', '-');
    if ($password_url !== '-' && !preg_match('#^https?://#', $password_url)) {
        fail('VPES_WEBMAIL_PASSWORD_URL must be an http:// or https:// URL, not ' . json_encode($password_url));
    }
    $plugins = ['vpes_gate', 'managesieve', 'markasjunk', 'enigma'];
    if ($password_url !== '-') {
        $plugins[] = 'password';
    }
    return [
        'db_dsnw' => $dsn,
        'des_key' => $des,
        'imap_host' => host('VPES_WEBMAIL_IMAP_HOST', 'ssl', 'tls'),
        'smtp_host' => host('VPES_WEBMAIL_SMTP_HOST', 'tls'),
        'managesieve_host' => host('VPES_WEBMAIL_SIEVE_HOST', 'tls'),
        'imap_conn_options' => ['ssl' => $ssl],
        'smtp_conn_options' => ['ssl' => $ssl],
        'managesieve_conn_options' => ['ssl' => $ssl],
        'smtp_user' => '%u',
        'smtp_pass' => '%p',
        'product_name' => env('VPES_WEBMAIL_PRODUCT_NAME', 'Webmail'),
        'plugins' => $plugins,
        'skin' => 'elastic',
        'support_url' => '',
        'enable_installer' => false,
        'enable_spellcheck' => false,
        'login_lc' => 2,
        // Logs go to php-fpm's workers' output, which php-fpm copies to the
        // container's (catch_workers_output).
        'log_driver' => 'stdout',
        'log_logins' => true,
        'temp_dir' => TMP . '/temp/',
        'session_storage' => 'db',
        // Sessions are in the database: a session begun on one replica is
        // carried on by another (same des_key, same database).
        'vpes_gate_domains' => $domains,
        // managesieve: filters and, in its own section, the vacation reply.
        'managesieve_vacation' => 1,
        'managesieve_auth_type' => 'PLAIN',
        // markasjunk: "Junk" moves the message into Junk; the tenant's
        // imapsieve trains Rspamd from that move, so no learning driver here.
        'markasjunk_learning_driver' => null,
        // enigma: keyrings in the database (table filestore), copied into a
        // temporary home for each request, so every replica sees them; private
        // keys stay protected by the passphrase the user chose.
        'enigma_multihost' => true,
        'enigma_pgp_homedir' => TMP . '/enigma',
        'enigma_passwordless' => false,
        // Minutes a passphrase the user typed stays in the session (encrypted
        // with the des_key). Debian's plugin config is empty and Roundcube does
        // not read the plugin's config.inc.php.dist, so without this the value
        // is 0: kept for the whole session. The user may shorten it (settings).
        'enigma_password_time' => 5,
        'password_driver' => 'vpes',
        'password_confirm_current' => true,
        'password_minimum_length' => 0,
        'vpes_password_url' => $password_url,
    ];
}

function max_upload(): int
{
    $v = env('VPES_WEBMAIL_MAX_UPLOAD', (string)(10 * 1024 * 1024));
    if (!preg_match('/^[0-9]{1,12}$/', $v) || (int)$v < 1024) {
        fail('VPES_WEBMAIL_MAX_UPLOAD must be a number of bytes (at least 1024), not ' . json_encode($v));
    }
    return (int)$v;
}

function put(string $name, string $text): void
{
    $path = RUN . "/$name";
    if (file_put_contents("$path.new", $text) === false || !chmod("$path.new", 0600)
        || !rename("$path.new", $path)) {
        fail("cannot write $path");
    }
}

$config = settings();
$max = max_upload();
// PHP refuses a file over upload_max_filesize, and a whole request over
// post_max_size, with Roundcube's own "exceeds the maximum size" message; the
// form's other fields need a little room beside the file. nginx lets through
// twice that so that PHP, not nginx's bare 413 page, answers a file somewhat
// too large; Roundcube's page already refuses one over the limit before sending.
$post = $max + 65536;
put('config.inc.php', "<?php\n\$config = " . var_export($config, true) . ";\n");
put('php-fpm-pool.conf', <<<POOL
[roundcube]
listen = /run/vpes-webmail/php-fpm.sock
listen.mode = 0600
; ondemand: no worker while nobody uses the webmail
pm = ondemand
pm.max_children = 8
pm.process_idle_timeout = 30s
pm.max_requests = 500
catch_workers_output = yes
decorate_workers_output = no
clear_env = yes
php_admin_value[upload_max_filesize] = $max
php_admin_value[post_max_size] = $post
php_admin_value[memory_limit] = 256M
php_admin_value[upload_tmp_dir] = /tmp/vpes-webmail/uploads
php_admin_value[sys_temp_dir] = /tmp/vpes-webmail/temp
php_admin_value[session.save_path] = /tmp/vpes-webmail/temp
php_admin_flag[log_errors] = on
php_admin_flag[display_errors] = off
php_admin_flag[expose_php] = off

POOL);
put('nginx-limits.conf', 'client_max_body_size ' . (2 * $post) . ";\n");
