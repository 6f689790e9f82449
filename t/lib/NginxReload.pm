# Helpers for `--- init` code that must act between nginx's start and a block's requests:
# a plain HTTP/1.0 GET, and a graceful reload (`nginx -s reload`, i.e. SIGHUP to the master)
# that returns once the new workers are serving. Core Perl only.
package NginxReload;
use strict;
use warnings;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
use Exporter 'import';
our @EXPORT = qw(http_get reload_nginx);

# http_get($path, %headers): the raw response (status line, headers, body).
sub http_get {
    my ($path, %headers) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ENV{TEST_NGINX_PORT}, Timeout => 5)
        or die "http_get: cannot connect to port $ENV{TEST_NGINX_PORT}: $!\n";
    my $req = "GET $path HTTP/1.0\r\nHost: localhost\r\n";
    $req .= "$_: $headers{$_}\r\n" for sort keys %headers;
    print $s "$req\r\n";
    local $/;
    my $res = <$s> // '';
    close $s;
    return $res;
}

sub _log_text {
    open my $fh, '<', $Test::Nginx::Util::ErrLogFile or return '';
    local $/;
    return <$fh> // '';
}

# reload_nginx($workers): SIGHUP to the master, then waits (up to 10 s) until the error log
# shows the reload and $workers new "[proxy_wasm] worker ready" lines after it.
sub reload_nginx {
    my $workers = shift // 1;
    my $pid = $Test::Nginx::Util::NginxPid or die "reload_nginx: nginx is not running\n";
    my $before = length _log_text();
    kill 'HUP', $pid or die "reload_nginx: cannot signal $pid: $!\n";
    my $deadline = time + 10;
    while (time < $deadline) {
        my $new = substr(_log_text(), $before);
        if ($new =~ /reconfiguring/) {
            my $ready = () = $new =~ /\[proxy_wasm\] worker ready/g;
            return 1 if $ready >= $workers;
        }
        sleep 0.05;
    }
    die "reload_nginx: nginx did not reload within 10 s\n";
}

1;
