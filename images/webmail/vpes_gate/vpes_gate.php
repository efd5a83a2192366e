<?php
/**
 * vpes_gate: only mailboxes whose server's plan has webmail may log in.
 *
 * The operator keeps the allowed domains in a file (a ConfigMap key mounted at
 * $config['vpes_gate_domains'], VPES_WEBMAIL_DOMAINS): one domain a line,
 * blank lines and `#` comments ignored. At each login (hook `authenticate`,
 * before Roundcube talks to IMAP) the file is read again, so a domain added
 * or removed counts from the next login with no restart; a login whose
 * address's domain is not listed is refused with the message below, and its
 * password never reaches the mailbox. A missing or unreadable file allows no
 * one (and says so in the log): failing closed, as a plan without webmail.
 *
 * A session already open when its domain leaves the file (a plan changed, a
 * server suspended) ends at its next request (hook `startup`, every task):
 * the file is read for each request of a logged-in user, a few hundred bytes
 * per domain, which costs far less than the IMAP work the request does.
 */
class vpes_gate extends rcube_plugin
{
    public function init()
    {
        $rc = rcmail::get_instance();
        if ($rc->task == 'login') {
            $this->add_texts('localization/');
            $this->add_hook('authenticate', [$this, 'authenticate']);
        }
        $this->add_hook('startup', [$this, 'startup']);
    }

    public function startup($args)
    {
        $rc = rcmail::get_instance();
        if (!empty($rc->user->ID) && $args['task'] != 'login' && $args['task'] != 'logout') {
            $domain = self::domain_of($rc->get_user_name());
            if ($domain === null || !self::allowed($domain)) {
                rcube::write_log('userlogins', "vpes_gate: ended the session of " . $rc->get_user_name()
                    . ": its domain may no longer use the webmail");
                $rc->kill_session();
            }
        }
        return $args;
    }

    public function authenticate($args)
    {
        $domain = self::domain_of($args['user']);
        if ($domain === null || !self::allowed($domain)) {
            $args['abort'] = true;
            $args['error'] = 'vpes_gate.notinplan';
        }
        return $args;
    }

    /** The domain of `local@domain`, lower case; null for anything else. */
    public static function domain_of($user)
    {
        $at = strrpos((string)$user, '@');
        if ($at === false || $at === 0 || $at === strlen($user) - 1) {
            return null;
        }
        return strtolower(substr($user, $at + 1));
    }

    public static function allowed($domain)
    {
        $path = rcube::get_instance()->config->get('vpes_gate_domains');
        // The kubelet swaps the file's directory link (..data) when the
        // ConfigMap changes; PHP's realpath cache would keep the old target
        // for a while in each worker.
        clearstatcache(true);
        $lines = is_readable($path) ? file($path, FILE_IGNORE_NEW_LINES) : false;
        if ($lines === false) {
            rcube::write_log('errors', "vpes_gate: cannot read the allowed domains ($path): every login is refused");
            return false;
        }
        foreach ($lines as $line) {
            $line = strtolower(trim($line));
            if ($line !== '' && $line[0] !== '#' && $line === $domain) {
                return true;
            }
        }
        return false;
    }
}
