# Certificates made at test time (openssl): a CA, a server certificate for "localhost" signed
# by it, and an unrelated CA. TestCerts::make($dir) writes ca.crt, other.crt, server.crt and
# server.key into $dir (emptied first) and returns $dir.
package TestCerts;
use strict;
use warnings;

sub make {
    my ($certs) = @_;
    system("rm -rf '$certs' && mkdir -p '$certs'") == 0 or die "mkdir $certs";
    my $openssl = sub { system("openssl @_ >/dev/null 2>&1") == 0 or die "openssl @_ failed" };
    $openssl->("req -x509 -newkey rsa:2048 -nodes -keyout $certs/ca.key -out $certs/ca.crt -days 2 -subj /CN=test-ca");
    $openssl->("req -x509 -newkey rsa:2048 -nodes -keyout $certs/other.key -out $certs/other.crt -days 2 -subj /CN=other-ca");
    $openssl->("req -newkey rsa:2048 -nodes -keyout $certs/server.key -out $certs/server.csr -subj /CN=localhost");
    open(my $ext, '>', "$certs/ext.cnf") or die; print $ext "subjectAltName=DNS:localhost\n"; close $ext;
    $openssl->("x509 -req -in $certs/server.csr -CA $certs/ca.crt -CAkey $certs/ca.key -CAcreateserial -out $certs/server.crt -days 2 -extfile $certs/ext.cnf");
    return $certs;
}

1;
