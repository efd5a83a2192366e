<?php
/**
 * The password plugin's vpes driver: the panel changes the password (it owns
 * the mailboxes' hashes, in the server's Secret), Roundcube only asks it.
 *
 * POSTs the form fields `address`, `current` and `new` to
 * $config['vpes_password_url'] (VPES_WEBMAIL_PASSWORD_URL). 200: changed. 4xx
 * with a text/plain body: refused, and the body (its first 300 characters) is
 * the message the user sees ("too short", "wrong current password"...).
 * Anything else: the plugin's own "could not save" message, and a log line
 * with the status (never the passwords).
 */
class rcube_vpes_password
{
    public function save($curpass, $passwd, $username)
    {
        $url = rcube::get_instance()->config->get('vpes_password_url');
        $context = stream_context_create(['http' => [
            'method' => 'POST',
            'header' => "Content-Type: application/x-www-form-urlencoded\r\n",
            'content' => http_build_query(['address' => $username, 'current' => $curpass, 'new' => $passwd]),
            'ignore_errors' => true,
            'timeout' => 20,
            'follow_location' => 0,
        ]]);
        $body = @file_get_contents($url, false, $context);
        $headers = isset($http_response_header) ? $http_response_header : [];
        $status = 0;
        if ($headers && preg_match('#^HTTP/\S+\s+([0-9]{3})#', $headers[0], $m)) {
            $status = (int)$m[1];
        }
        if ($status === 200) {
            return PASSWORD_SUCCESS;
        }
        $plain = false;
        foreach ($headers as $h) {
            if (preg_match('#^content-type:\s*text/plain#i', $h)) {
                $plain = true;
            }
        }
        if ($status >= 400 && $status < 500 && $plain && trim((string)$body) !== '') {
            return ['code' => PASSWORD_ERROR, 'message' => mb_substr(trim($body), 0, 300)];
        }
        rcube::raise_error([
            'code' => 600, 'file' => __FILE__, 'line' => __LINE__,
            'message' => "Password plugin: the panel answered " . ($status ?: 'nothing') . " for $username",
        ], true, false);
        return PASSWORD_CONNECT_ERROR;
    }
}
