# The gRPC test server (t/lib/grpc_server.py, python3 + grpcio) for the t/ suites.
#
#   use GrpcServer;
#   GrpcServer::start_for_tests($certs);   # $certs: a TestCerts::make directory (optional)
#
# start_for_tests sets $ENV{TEST_NGINX_GRPC_PORT} (plain) and, given $certs,
# $ENV{TEST_NGINX_GRPCS_PORT} (TLS with $certs/server.crt, CN/SAN localhost); it is
#   $ENV{TEST_NGINX_GRPC_PORT} = GrpcServer::start();
#   $ENV{TEST_NGINX_GRPCS_PORT} = GrpcServer::start(cert => "$certs/server.crt", key => "$certs/server.key");
#
# start([port => P] [, cert => F, key => K]) runs the server on 127.0.0.1, waits (at most 15 s)
# until it is serving, and returns its port. Without a port the server binds port 0 itself
# and reports the port the kernel gave it: no race with other suites or files picking ports.
# Several servers per test file are fine. Every server is stopped (SIGTERM, then reaped) when
# the test process ends, also by die or by a signal (Test::Nginx's handlers exit through END);
# a server whose parent disappears (SIGKILL) stops by itself.
# $ENV{TEST_NGINX_GRPC_SERVER} overrides the script (default t/lib/grpc_server.py, relative to
# the repository root, prove's working directory); $ENV{TEST_NGINX_PYTHON} the interpreter.
package GrpcServer;
use strict;
use warnings;
use File::Temp ();
use IO::Select ();
use POSIX ();
use Time::HiRes qw(time sleep);

my $MainPid = $$;
my @Servers;    # { pid, out (pipe), log (File::Temp) }

sub start {
    my %o = @_;
    my $script = $ENV{TEST_NGINX_GRPC_SERVER} // 't/lib/grpc_server.py';
    my $python = $ENV{TEST_NGINX_PYTHON} // 'python3';
    -f $script or die "GrpcServer: $script not found (run prove from the repository root)\n";
    if (system("$python -c 'import grpc' >/dev/null 2>&1") != 0) {
        die "GrpcServer: python3 grpcio is missing: run scripts/setup.sh\n";
    }
    my @cmd = ($python, $script, '--port', $o{port} // 0);
    if (defined $o{cert} || defined $o{key}) {
        defined $o{cert} && defined $o{key} or die "GrpcServer::start: cert and key go together\n";
        push @cmd, '--tls-cert', $o{cert}, '--tls-key', $o{key};
    }
    push @cmd, '--pidfile', $o{pidfile} if defined $o{pidfile};

    my $log = File::Temp->new(TEMPLATE => 'grpc-server-XXXXXX', TMPDIR => 1, UNLINK => 1);
    pipe(my $r, my $w) or die "GrpcServer: pipe: $!\n";
    my $pid = fork // die "GrpcServer: fork: $!\n";
    if (!$pid) {
        close $r;
        open STDIN, '<', '/dev/null';
        open STDOUT, '>&', $w;
        open STDERR, '>&', $log;
        { exec @cmd }
        POSIX::_exit(127);
    }
    close $w;
    my $srv = { pid => $pid, out => $r, log => $log };
    push @Servers, $srv;

    my ($line, $buf) = ('', '');
    my $sel = IO::Select->new($r);
    my $deadline = time + 15;
    while ($buf !~ /\n/ && (my $left = $deadline - time) > 0) {
        last unless $sel->can_read($left);
        last unless sysread($r, $buf, 256, length $buf);
    }
    ($line) = $buf =~ /^(.*)\n/;
    if (defined $line && $line =~ /^ready(?: (\d+))?$/) {
        my $port = $1 // $o{port};
        $srv->{port} = $port;
        return $port;
    }
    my $exited = waitpid($pid, POSIX::WNOHANG()) == $pid ? $? : undef;
    _stop($srv) unless defined $exited;
    @Servers = grep { $_ != $srv } @Servers;
    my $err = do { local $/; open my $fh, '<', $log->filename; <$fh> } // '';
    $err = substr($err, -1500) if length $err > 1500;
    die "GrpcServer: '@cmd' " . (defined $exited ? "exited (status $exited) before it was ready"
                                                 : "was not ready within 15 s")
        . (defined $line ? " (printed: $line)" : '') . ($err ne '' ? ":\n$err" : "\n");
}

sub start_for_tests {
    my ($certs) = @_;
    $ENV{TEST_NGINX_GRPC_PORT} = start();
    $ENV{TEST_NGINX_GRPCS_PORT} = start(cert => "$certs/server.crt", key => "$certs/server.key") if defined $certs;
    return ($ENV{TEST_NGINX_GRPC_PORT}, $ENV{TEST_NGINX_GRPCS_PORT});
}

# The ports of the running servers, in start order.
sub ports { map { $_->{port} } @Servers }

sub _stop {
    my $srv = shift;
    my $pid = $srv->{pid} or return;
    $srv->{pid} = 0;
    kill 'TERM', $pid;
    my $deadline = time + 5;
    while (time < $deadline) {
        my $r = waitpid($pid, POSIX::WNOHANG());
        return if $r == $pid || $r == -1;    # -1: somebody else reaped it
        sleep 0.05;
    }
    kill 'KILL', $pid;
    waitpid($pid, 0);
}

sub stop_all {
    return unless $$ == $MainPid;
    _stop($_) for @Servers;
    @Servers = ();
}

END {
    local $?;
    stop_all();
}

1;
