package Test::Nginx::Socket;

# Core-Perl-only, Test::Nginx::Socket compatible test runner for this
# project's t/ suite (see t/README.md).  Test files written for it also run
# under openresty/test-nginx's Test::Nginx::Socket.

use strict;
use warnings;

use Carp qw(croak carp cluck confess);
use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use IO::Select ();
use IO::Socket::INET ();
use List::Util qw(shuffle min);
use Time::HiRes qw(sleep time);
use Test::More ();

use Test::Nginx::Util;

our $VERSION = '0.33';

our @ResponseBodyChecks;

# this runner sends --- stream_request itself (the real one needs Test::Nginx::Socket::Lua::Stream)
our $NativeStream = 1;

# our own functions (most come from Test::Nginx::Util)
our @EXPORT = (@Test::Nginx::Util::EXPORT, qw(
    plan run_tests run_test add_response_body_check no_diff
));

# what Test::Base (the real module's base class) re-exports from Test::More / Carp
our @TEST_MORE_EXPORT = qw(
    ok is isnt like unlike is_deeply cmp_ok skip todo_skip pass fail
    eq_array eq_hash eq_set can_ok isa_ok diag note explain done_testing
    BAIL_OUT subtest new_ok
);
our @CARP_EXPORT = qw(croak carp cluck confess);

sub import {
    my $class = shift;
    my $caller = caller;
    my @args = grep { !/^-base$/i } @_;
    if (@args) {
        # 'no_plan' / tests => N / skip_all => reason: passed to Test::More
        Test::More::plan(@args);
    }
    no strict 'refs';
    for my $sym (@EXPORT) {
        my $src = defined &{"Test::Nginx::Socket::$sym"}
                ? \&{"Test::Nginx::Socket::$sym"}
                : \&{"Test::Nginx::Util::$sym"};
        *{"${caller}::$sym"} = $src;
    }
    *{"${caller}::$_"} = \&{"Test::More::$_"} for @TEST_MORE_EXPORT;
    *{"${caller}::$_"} = \&{"Carp::$_"} for @CARP_EXPORT;
    *{"${caller}::TODO"} = \$Test::More::TODO;
    # Test::Base turns strict and warnings on in the test file as well
    strict->import;
    warnings->import;
}

sub plan { Test::More::plan(@_) }
sub no_diff () { }
sub add_response_body_check ($) { push @ResponseBodyChecks, shift }

# ---------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------

sub run_tests () {
    Test::Nginx::Util::nginx_version();
    my @blocks = blocks();
    @blocks = shuffle @blocks unless $Test::Nginx::Util::NoShuffle;
    local $SIG{PIPE} = 'IGNORE';
    for my $block (@blocks) {
        for my $hdl (@Test::Nginx::Util::BlockPreprocessors) {
            $hdl->($block);
        }
        $block->set_value(name => "$0 " . $block->name);
        run_test($block);
        for my $hdl (@Test::Nginx::Util::TestCleanupHandlers) {
            $hdl->();
        }
    }
    Test::Nginx::Util::cleanup();
}

sub _parse_time ($) {
    my $tm = shift;
    return undef unless defined $tm;
    $tm =~ s/^\s+|\s+$//g;
    return $1 / 1000 if $tm =~ /^([\d.]+)ms$/;
    return $1 if $tm =~ /^([\d.]+)s?$/;
    return $tm;
}

sub _should_skip ($) {
    my $block = shift;
    my $name = $block->name;
    my $ver = $Test::Nginx::Util::NginxVersion;
    if (defined(my $skip = $block->skip_eval)) {
        if ($skip =~ /^\s*(\d+)\s*:\s*(.*)/s) {
            my ($n, $code) = ($1, $2);
            my $r = do { package main; no strict; eval $code };
            bail_out("$name - skip_eval - failed to eval \"$code\": $@") if $@;
            return ($n, 'skip_eval') if $r;
        } else {
            bail_out("$name - invalid --- skip_eval spec: $skip");
        }
    }
    if (defined(my $skip = $block->skip_nginx)) {
        $skip =~ m{^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+\.\d+\.\d+)(?:\s*:\s*(.*?))?\s*$}
            or bail_out("$name - invalid --- skip_nginx spec: $skip");
        my ($n, $op, $v, $reason) = ($1, $2, $3, $4);
        my $cv = Test::Nginx::Util::canon_version($v);
        return ($n, $reason || "nginx version $op $v") if eval "$ver $op $cv";
    } elsif (defined(my $skip2 = $block->skip_nginx2)) {
        $skip2 =~ m{^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+\.\d+\.\d+)\s*(or|and)\s*
                    ([<>]=?)\s*(\d+\.\d+\.\d+)(?:\s*:\s*(.*?))?\s*$}x
            or bail_out("$name - invalid --- skip_nginx2 spec: $skip2");
        my ($n, $opa, $va, $x, $opb, $vb, $reason) = ($1, $2, $3, $4, $5, $6, $7);
        my $ra = eval "$ver $opa " . Test::Nginx::Util::canon_version($va);
        my $rb = eval "$ver $opb " . Test::Nginx::Util::canon_version($vb);
        return ($n, $reason || "nginx version $opa $va $x $opb $vb")
            if $x eq "or" ? ($ra || $rb) : ($ra && $rb);
    }
    return;
}

sub _log_excerpt (;$$) {
    my ($lines, $max) = @_;
    $max ||= 30;
    ($lines) = Test::Nginx::Util::error_log_lines(0) unless $lines;
    # [debug] lines drown everything else: leave them out
    my @l = grep { !/^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d \[debug\]/ } @$lines;
    my $debug = @$lines - @l;
    my $skipped = @l > $max ? @l - $max : 0;
    @l = @l[-$max .. -1] if $skipped;
    my $note = '';
    $note .= "$skipped earlier lines" if $skipped;
    $note .= ($note ? ' and ' : '') . "$debug [debug] lines" if $debug;
    $note = "... ($note left out; TEST_NGINX_NO_CLEAN=1 keeps "
          . "$Test::Nginx::Util::ErrLogFile)\n" if $note;
    return $note . join('', @l);
}

sub _error_lines_excerpt () {
    my ($lines) = Test::Nginx::Util::error_log_lines(0);
    my @l = grep { /\[(?:error|crit|alert|emerg)\]/ } @$lines;
    return '' unless @l;
    @l = @l[-10 .. -1] if @l > 10;
    return "error.log [error]/[crit]/[alert]/[emerg] lines:\n" . join '', @l;
}

sub run_test ($) {
    my $block = shift;
    my $name = $block->name;
    return if defined $block->SKIP;

    if (my ($n, $reason) = _should_skip($block)) {
        SKIP: { Test::More::skip("$name - $reason", $n) }
        return;
    }

    $Test::Nginx::Util::ServerPort = $Test::Nginx::Util::FixedPort
                                     || Test::Nginx::Util::pick_free_port();
    $ENV{TEST_NGINX_SERVER_PORT} = $ENV{TEST_NGINX_PORT} = $Test::Nginx::Util::ServerPort;
    $Test::Nginx::Util::StreamPort = $Test::Nginx::Util::FixedStreamPort
                                     || Test::Nginx::Util::pick_free_port();
    $ENV{TEST_NGINX_STREAM_PORT} = $Test::Nginx::Util::StreamPort;
    $Test::Nginx::Util::RandPorts = {};
    $Test::Nginx::Util::ErrLogFilePos = 0;

    Test::Nginx::Util::setup_server_root();
    Test::Nginx::Util::write_user_files($block);
    Test::Nginx::Util::write_config_file($block);

    if (defined $block->must_die) {
        _run_must_die($block);
        Test::Nginx::Util::clean_server_root();
        return;
    }

    if (!$Test::Nginx::Util::NoConfigTest) {
        my ($ok, $st, $out) = Test::Nginx::Util::test_config();
        if (!$ok) {
            Test::More::fail("$name - nginx -t failed ("
                             . Test::Nginx::Util::describe_status($st) . ")");
            Test::More::diag("nginx -t output:\n$out");
            Test::Nginx::Util::clean_server_root();
            return;
        }
        # only look at what the real start logs
        $Test::Nginx::Util::ErrLogFilePos = Test::Nginx::Util::error_log_size();
    }

    my $start_pos = $Test::Nginx::Util::ErrLogFilePos;
    my ($ok, $msg, $out) = Test::Nginx::Util::start_nginx();
    if (!$ok) {
        Test::More::fail("$name - $msg");
        Test::More::diag("nginx output:\n$out") if length $out;
        my ($lines) = Test::Nginx::Util::error_log_lines($start_pos);
        Test::More::diag("error.log:\n" . _log_excerpt($lines));
        Test::Nginx::Util::stop_nginx();
        Test::Nginx::Util::clean_server_root();
        return;
    }

    if (defined(my $init = $block->init)) {
        do { package main; no strict; eval $init };
        bail_out("$name - --- init failed: $@") if $@;
    }

    my $reqs = _get_requests($block);
    my $need_array = @$reqs > 1;
    my $timeout = _parse_time($block->timeout) || $Test::Nginx::Util::Timeout;

    if (_is_stream_block($block)) {
        for my $rep (0 .. $Test::Nginx::Util::RepeatEach - 1) {
            _run_stream_request($block, $timeout, $rep);
            if (defined(my $wait = $block->wait)) {
                sleep _parse_time($wait);
            }
            _check_error_log($block, undef, $rep);
        }
        Test::Nginx::Util::stop_nginx();
        _check_shutdown_error_log($block);
        _check_crash($block, $start_pos);
        Test::Nginx::Util::clean_server_root();
        return;
    }

    for my $rep (0 .. $Test::Nginx::Util::RepeatEach - 1) {
        for my $i (0 .. $#$reqs) {
            my $req = $reqs->[$i];
            my $r = _send_request($req, $timeout);
            my $res = $r->{raw} ne '' ? _parse_response($r->{raw}, $req->{head}) : undef;
            my $where = "(repeated req $rep, req $i)";
            if ($r->{error}) {
                Test::More::fail("$name - $r->{error} $where");
                Test::More::diag(_error_lines_excerpt());
            } elsif ($r->{timed_out} && !defined $block->abort) {
                Test::More::fail("$name - timeout: no complete response within "
                                 . "${timeout}s $where");
                Test::More::diag("received " . length($r->{raw}) . " bytes:\n"
                                 . substr($r->{raw}, 0, 2000));
                Test::More::diag(_error_lines_excerpt());
            }
            if ($res && $res->{error} && !$r->{timed_out}) {
                Test::More::diag("$name - bad response: $res->{error}");
            }
            next if defined $block->ignore_response;
            _check_error_code($block, $res, $i, $need_array);
            _check_raw_response_headers($block, $res, $i, $need_array);
            _check_response_headers($block, $res, $i, $need_array);
            _check_response_body($block, $res, $i, $rep, $need_array)
                unless defined $block->ignore_response_body;
        }
        if (defined(my $wait = $block->wait)) {
            sleep _parse_time($wait);
        }
        _check_error_log($block, undef, $rep);
    }

    Test::Nginx::Util::stop_nginx();
    _check_shutdown_error_log($block);
    _check_crash($block, $start_pos);
    Test::Nginx::Util::clean_server_root();
}

sub _run_must_die ($) {
    my $block = shift;
    my $name = $block->name;
    my $must_die = $block->must_die;
    $must_die =~ s/^\s+|\s+$//g;

    my ($died, $st, $output) = (0, undef, '');
    if (!$Test::Nginx::Util::NoConfigTest) {
        my ($ok, $tst, $out) = Test::Nginx::Util::test_config();
        $output .= $out;
        ($died, $st) = (1, $tst) unless $ok;
    }
    if (!$died) {
        my ($ok, $msg, $out, $sst) = Test::Nginx::Util::start_nginx();
        $output .= $out;
        if ($ok) {
            Test::More::diag("$name - nginx must die but it does not; stopping it");
        } else {
            ($died, $st) = (1, $sst);
        }
        Test::Nginx::Util::stop_nginx();
    }

    if ($must_die =~ /^\d+$/) {
        Test::More::is(defined $st ? $st >> 8 : -1, $must_die,
                       "$name - die with the expected exit code");
    } else {
        Test::More::ok($died, "$name - die as expected (nginx failed to start)")
            or Test::More::diag("nginx output:\n$output");
    }

    my ($log_lines) = Test::Nginx::Util::error_log_lines(0);
    my @lines = ((map { "$_\n" } split /\n/, $output), @$log_lines);
    _check_error_log($block, \@lines, 0);
}

# ---------------------------------------------------------------------------
# stream {} blocks (the sections of Test::Nginx::Socket::Lua::Stream, sent natively)
# ---------------------------------------------------------------------------

# A block talks to the stream server when it has one (or a stream_request) and no HTTP request.
sub _is_stream_block ($) {
    my $block = shift;
    return 0 if defined $block->request || defined $block->raw_request
             || defined $block->pipelined_requests;
    return defined $block->stream_server_config || defined $block->stream_request;
}

# Sends --- stream_request (a string, or an eval array of pieces sent ~50 ms apart) to the
# stream port, half-closes if --- stream_half_close, reads until the server closes (or the
# timeout), and checks stream_response(_like) / response_body(_like).
sub _run_stream_request ($$$) {
    my ($block, $timeout, $rep) = @_;
    my $name = $block->name;
    my $req = $block->stream_request;
    my @pieces = !defined $req ? () : ref $req eq 'ARRAY' ? @$req : ($req);
    @pieces = map { expand_env_in_text($_, $name) } @pieces;
    my $port = $Test::Nginx::Util::StreamPort;
    my $addr = $Test::Nginx::Util::ServerAddr;
    my %r = (raw => '', timed_out => 0);
    my $deadline = time + $timeout;
    my $where = "(repeated req $rep, stream)";

    my $sock = IO::Socket::INET->new(
        PeerAddr => $addr, PeerPort => $port, Proto => 'tcp', Timeout => $timeout,
    );
    if (!$sock) {
        Test::More::fail("$name - failed to connect to the stream port $addr:$port: $@ $where");
        Test::More::diag(_error_lines_excerpt());
        return;
    }
    $sock->blocking(0);
    my $sel = IO::Select->new($sock);
    my $read_some = sub {
        my $n = sysread($sock, my $buf, 65536);
        if (!defined $n) {
            return 1 if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
            $r{read_error} = "$!";    # e.g. ECONNRESET: the server reset the connection
            return 0;
        }
        return 0 if $n == 0;
        $r{raw} .= $buf;
        return 1;
    };
    my $closed = 0;
  WRITE:
    for my $p (0 .. $#pieces) {
        my $data = $pieces[$p];
        while (length $data) {
            my $left = $deadline - time;
            if ($left <= 0) { $r{timed_out} = 1; last WRITE }
            next unless $sel->can_write($left);
            my $n = syswrite($sock, $data);
            if (!defined $n) {
                next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
                $r{write_error} = "$!";
                last WRITE;    # e.g. EPIPE: the server closed early; read what it sent
            }
            substr($data, 0, $n, '');
        }
        if ($p < $#pieces) {
            # between pieces: take in what the server already sent, keep the pieces apart
            my $until = time + 0.05;
            while ((my $left = $until - time) > 0) {
                next unless $sel->can_read($left);
                if (!$read_some->()) { $closed = 1; last WRITE }
            }
        }
    }
    if (defined $block->stream_half_close && !$closed && !$r{timed_out}) {
        shutdown($sock, 1);
    }
    while (!$closed && !$r{timed_out}) {
        my $left = $deadline - time;
        if ($left <= 0) { $r{timed_out} = 1; last }
        next unless $sel->can_read(min($left, 0.5));
        last unless $read_some->();
    }
    close $sock;

    if ($r{timed_out} && !defined $block->abort) {
        Test::More::fail("$name - timeout: the stream server did not close the connection "
                         . "within ${timeout}s $where");
        Test::More::diag("received " . length($r{raw}) . " bytes:\n" . substr($r{raw}, 0, 2000));
        Test::More::diag(_error_lines_excerpt());
    }
    return if defined $block->ignore_response;

    my $data = $r{raw};
    my $exp = defined $block->stream_response ? $block->stream_response : $block->response_body;
    my $like = defined $block->stream_response_like ? $block->stream_response_like
                                                     : $block->response_body_like;
    if (defined $exp) {
        $exp = $exp->[0] if ref $exp eq 'ARRAY';
        if (ref $exp eq 'Regexp') {
            Test::More::like($data, $exp, "$name - stream response like $where");
        } else {
            $exp = expand_env_in_text($exp, $name);
            Test::More::is($data, $exp, "$name - stream response is expected $where")
                or Test::More::diag(_error_lines_excerpt());
        }
    } elsif (defined $like) {
        $like = $like->[0] if ref $like eq 'ARRAY';
        my $summary = $data;
        $summary =~ s/^\s+|\s+$//gs;
        $summary = substr($summary, 0, 200) . '...' if length $summary > 200;
        Test::More::like($data, ref $like ? $like : qr/$like/s,
                         "$name - stream response like ($summary) $where")
            or Test::More::diag(_error_lines_excerpt());
    }
    if (defined $block->response_body_unlike) {
        my $un = $block->response_body_unlike;
        Test::More::unlike($data, ref $un ? $un : qr/$un/s,
                           "$name - stream response unlike $where");
    }
    for my $check (@ResponseBodyChecks) {
        $check->($block, $data, 0, $rep, 0);
    }
}

# ---------------------------------------------------------------------------
# requests
# ---------------------------------------------------------------------------

sub _get_indexed_value ($$$$) {
    my ($name, $value, $idx, $need_array) = @_;
    if ($need_array) {
        return $value->[$idx] if ref $value && ref $value eq 'ARRAY';
        bail_out("$name - You asked for many requests, the expected results "
                 . "should be arrays as well.");
    }
    return $value->[0] if ref $value && ref $value eq 'ARRAY';
    return $value;
}

sub _parse_more_headers ($) {
    my $in = shift;
    my ($out, $is_chunked) = ('', 0);
    for my $header (split /\n+/, $in) {
        next if $header =~ /^\s*#/;
        next if $header !~ /\S/;
        my ($key, $val) = split /:\s*/, $header, 2;
        $val = '' unless defined $val;
        $val =~ s/\r$//;
        $is_chunked = 1 if lc($key) eq 'transfer-encoding' && $val eq 'chunked';
        $out .= "$key: $val\r\n";
    }
    return ($out, $is_chunked);
}

sub _build_request ($$$) {
    my ($name, $request, $more_headers) = @_;
    $request = '' unless defined $request;
    1 while $request =~ s/^\s*\#[^\n]+\s+|^\s+//gs;
    my ($first, $content) = split /\n/, $request, 2;
    $first = '' unless defined $first;
    $first =~ /^\s*(\S+)(?:\s+(\S+))?(?:\s+(\S+))?\s*$/
        or bail_out("$name - Request line is not valid. Should be 'meth [url [version]]'"
                    . " but got \"$first\".");
    my ($meth, $url, $ver) = ($1, $2 // '/', $3 // 'HTTP/1.1');
    my ($hdr, $is_chunked) = _parse_more_headers($more_headers // '');

    my $len = '';
    if (!$is_chunked && defined $content && $content ne ''
        && $hdr !~ /(?:^|\n)Content-Length:/i)
    {
        $content =~ s/^\s+|\s+$//gs;
        $len = "Content-Length: " . length($content) . "\r\n";
    }
    my $headers = '';
    $headers .= "Host: $Test::Nginx::Util::ServerName\r\n"
        if $hdr !~ /(?:^|\n)Host:/i;
    $headers .= "Connection: close\r\n"
        if $hdr !~ /(?:^|\n)Connection/i;
    $headers .= "$hdr$len\r\n";
    return {
        packets => ["$meth $url $ver\r\n$headers" . ($content // '')],
        head    => uc($meth) eq 'HEAD',
    };
}

sub _get_requests ($) {
    my $block = shift;
    my $name = $block->name;
    my @reqs;

    if (defined $block->pipelined_requests) {
        bail_out("$name - --- pipelined_requests is not supported by this runner");
    }

    if (defined(my $raw = $block->raw_request)) {
        my @packets = ref $raw eq 'ARRAY' ? @$raw : ($raw);
        my $head = join('', @packets) =~ /^\s*HEAD\s/i;
        return [{ packets => \@packets, head => $head }];
    }

    my $request = $block->request;
    return [] unless defined $request;
    my $more_headers = $block->more_headers // '';
    my @list = ref $request eq 'ARRAY' ? @$request : ($request);
    my $i = 0;
    for my $one (@list) {
        my $mh = $more_headers;
        if (ref $more_headers eq 'ARRAY') {
            $mh = $more_headers->[$i];
            bail_out("$name - --- more_headers lacks data for request $i")
                unless defined $mh;
        }
        $mh = expand_env_in_text($mh, $name);
        if (ref $one eq 'ARRAY') {
            # a request given as a list of packets
            my $r = _build_request($name,
                expand_env_in_text(join('', map { ref $_ ? $_->{value} : $_ } @$one), $name),
                $mh);
            push @reqs, $r;
        } else {
            push @reqs, _build_request($name, expand_env_in_text($one, $name), $mh);
        }
        $i++;
    }
    return \@reqs;
}

sub _response_complete ($$) {
    my ($buf, $head) = @_;
    while (1) {
        my $hend = index($buf, "\r\n\r\n");
        return 0 if $hend < 0;
        my $hdr = substr($buf, 0, $hend);
        my $rest = substr($buf, $hend + 4);
        return 0 unless $hdr =~ m{^HTTP/\d+(?:\.\d+)?\s+(\d{3})};
        my $code = $1;
        if ($code =~ /^1/ && $code != 101) {
            $buf = $rest;
            next;
        }
        return 1 if $head || $code == 204 || $code == 304 || $code == 101;
        if ($hdr =~ /^Transfer-Encoding:\s*chunked\s*$/mi) {
            my (undef, $complete) = _decode_chunked($rest);
            return $complete;
        }
        if ($hdr =~ /^Content-Length:\s*(\d+)\s*$/mi) {
            return length($rest) >= $1;
        }
        return 0;    # read until EOF
    }
}

sub _send_request ($$) {
    my ($req, $timeout) = @_;
    my $port = server_port_for_client();
    my $addr = $Test::Nginx::Util::ServerAddr;
    my %r = (raw => '', timed_out => 0);
    my $deadline = time + $timeout;

    my $sock = IO::Socket::INET->new(
        PeerAddr => $addr, PeerPort => $port, Proto => 'tcp', Timeout => $timeout,
    );
    if (!$sock) {
        $r{error} = "failed to connect to $addr:$port: $@";
        return \%r;
    }
    $sock->blocking(0);
    my $sel = IO::Select->new($sock);

    my $npackets = @{ $req->{packets} };
  WRITE:
    for my $p (0 .. $npackets - 1) {
        my $data = $req->{packets}[$p];
        while (length $data) {
            my $left = $deadline - time;
            if ($left <= 0) { $r{timed_out} = 1; last WRITE }
            next unless $sel->can_write($left);
            my $n = syswrite($sock, $data);
            if (!defined $n) {
                next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
                last WRITE;    # e.g. EPIPE: the server closed early; read what it sent
            }
            substr($data, 0, $n, '');
        }
        sleep 0.01 if $p < $npackets - 1;
    }

    while (!$r{timed_out}) {
        my $left = $deadline - time;
        if ($left <= 0) { $r{timed_out} = 1; last }
        next unless $sel->can_read(min($left, 0.5));
        my $n = sysread($sock, my $buf, 65536);
        if (!defined $n) {
            next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
            $r{read_error} = "$!";
            last;
        }
        last if $n == 0;
        $r{raw} .= $buf;
        last if _response_complete($r{raw}, $req->{head});
    }
    close $sock;
    return \%r;
}

sub _decode_chunked ($) {
    my $data = shift;
    my ($out, $pos) = ('', 0);
    while (1) {
        my $eol = index($data, "\r\n", $pos);
        return ($out, 0, 'incomplete chunked body') if $eol < 0;
        my $line = substr($data, $pos, $eol - $pos);
        return ($out, 0, "bad chunk size line \"$line\"") unless $line =~ /^([0-9a-fA-F]+)/;
        my $size = hex $1;
        $pos = $eol + 2;
        if ($size == 0) {
            while (1) {
                my $e = index($data, "\r\n", $pos);
                return ($out, 0, 'incomplete chunked trailer') if $e < 0;
                my $l = substr($data, $pos, $e - $pos);
                $pos = $e + 2;
                last if $l eq '';
            }
            return ($out, 1, undef);
        }
        return ($out, 0, 'incomplete chunk') if length($data) < $pos + $size + 2;
        $out .= substr($data, $pos, $size);
        $pos += $size;
        return ($out, 0, 'missing CRLF after a chunk') if substr($data, $pos, 2) ne "\r\n";
        $pos += 2;
    }
}

sub _parse_response ($$) {
    my ($raw, $head) = @_;
    my $res = bless { code => undef, headers => [], raw_headers => '', body => undef },
                    'Test::Nginx::Socket::Response';
    while (1) {
        my $hend = index($raw, "\r\n\r\n");
        my $hdr = $hend < 0 ? $raw : substr($raw, 0, $hend + 2);
        my $rest = $hend < 0 ? '' : substr($raw, $hend + 4);
        my ($status_line, @lines) = split /\r\n/, $hdr;
        $status_line //= '';
        if ($status_line !~ m{^HTTP/(\d+(?:\.\d+)?)\s+(\d{3})(?:\s+(.*))?$}) {
            $res->{error} = "bad status line \"$status_line\"";
            $res->{body} = $raw;
            return $res;
        }
        my ($ver, $code, $reason) = ($1, $2, $3);
        if ($code =~ /^1/ && $code != 101 && $hend >= 0) {
            $raw = $rest;
            next;
        }
        @$res{qw(version code reason status_line raw_headers)}
            = ($ver, $code, $reason // '', $status_line, $hdr);
        for my $l (@lines) {
            if ($l =~ /^([^:\s]+)\s*:\s*(.*?)\s*$/) {
                push @{ $res->{headers} }, [$1, $2];
            }
        }
        if ($hend < 0) {
            $res->{error} = 'incomplete response header';
            $res->{body} = '';
            return $res;
        }
        if ($head || $code == 204 || $code == 304 || $code == 101) {
            $res->{body} = '';
        } elsif (lc($res->header('Transfer-Encoding') // '') eq 'chunked') {
            my ($body, $complete, $err) = _decode_chunked($rest);
            $res->{body} = $body;
            $res->{error} = $err unless $complete;
        } elsif (defined(my $cl = $res->header('Content-Length'))) {
            $res->{body} = substr($rest, 0, $cl);
            $res->{error} = "truncated body: got " . length($rest) . " of $cl bytes"
                if length($rest) < $cl;
        } else {
            $res->{body} = $rest;
        }
        return $res;
    }
}

package Test::Nginx::Socket::Response {
    sub code        { $_[0]{code} }
    sub content     { $_[0]{body} }
    sub raw_headers { $_[0]{raw_headers} }
    sub status_line { $_[0]{status_line} }
    # like HTTP::Headers: all values of a header (case-insensitive) joined with ", "
    sub header {
        my ($self, $name) = @_;
        my @v = map { $_->[1] } grep { lc $_->[0] eq lc $name } @{ $self->{headers} };
        return wantarray ? @v : (@v ? join(', ', @v) : undef);
    }
}

package Test::Nginx::Socket;

# ---------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------

sub _fmt ($) {
    my $s = shift;
    return 'undef' unless defined $s;
    $s =~ s/\n/\\n/g;
    $s =~ s/\r/\\r/g;
    $s =~ s/\t/\\t/g;
    return $s;
}

sub _subst_port ($) {
    my $v = shift;
    return $v if !defined $v || ref $v;
    my $port = $Test::Nginx::Util::ServerPort;
    my $cport = server_port_for_client();
    $v =~ s/\$ServerPortForClient\b/$cport/g;
    $v =~ s/\$ServerPort\b/$port/g;
    return $v;
}

sub _body_excerpt ($) {
    my $res = shift;
    return "no response" unless $res;
    my $b = $res->content // '';
    return "response body (" . length($b) . " bytes):\n"
        . (length($b) > 2000 ? substr($b, 0, 2000) . "\n..." : $b);
}

sub _check_error_code ($$$$) {
    my ($block, $res, $idx, $need_array) = @_;
    my $name = $block->name;
    my $code = ($res && $res->code) || '';
    my $ok;
    if (defined $block->error_code_like) {
        my $val = _get_indexed_value($name, $block->error_code_like, $idx, $need_array);
        $ok = Test::More::like($code, qr/$val/sm, "$name - status code ok");
    } else {
        my $expected = defined $block->error_code
            ? _get_indexed_value($name, $block->error_code, $idx, $need_array) : 200;
        $expected =~ s/^\s+|\s+$//g if defined $expected;
        $ok = Test::More::is($code, $expected, "$name - status code ok");
    }
    Test::More::diag(_body_excerpt($res) . "\n" . _error_lines_excerpt()) unless $ok;
}

sub _check_raw_response_headers ($$$$) {
    my ($block, $res, $idx, $need_array) = @_;
    my $name = $block->name;
    my $raw = $res ? $res->raw_headers : '';
    if (defined $block->raw_response_headers_like) {
        my $e = _get_indexed_value($name, $block->raw_response_headers_like, $idx, $need_array);
        Test::More::like($raw, qr/$e/s, "$name - raw resp headers like");
    }
    if (defined $block->raw_response_headers_unlike) {
        my $e = _get_indexed_value($name, $block->raw_response_headers_unlike, $idx, $need_array);
        Test::More::unlike($raw, qr/$e/s, "$name - raw resp headers unlike");
    }
}

sub _header_lines ($) {
    my $s = shift // '';
    my @out;
    for my $line (split /\n/, $s) {
        $line =~ s/^\s+|\s+$//g;
        next if $line eq '';
        if ($line =~ s/^!\s*//) {
            push @out, [$line, undef];
        } else {
            my ($k, $v) = split /\s*:\s*/, $line, 2;
            push @out, [$k, $v // ''];
        }
    }
    return @out;
}

sub _check_response_headers ($$$$) {
    my ($block, $res, $idx, $need_array) = @_;
    my $name = $block->name;
    my $raw = $res ? $res->raw_headers : '';
    if (defined $block->response_headers) {
        my $spec = _get_indexed_value($name, $block->response_headers, $idx, $need_array);
        for my $h (_header_lines($spec)) {
            my ($key, $val) = @$h;
            if (!defined $val) {
                Test::More::unlike($raw, qr/^\s*\Q$key\E\s*:/msi,
                                   "$name - header $key not present in the raw headers");
                next;
            }
            $val = _subst_port($val);
            my $actual = $res ? scalar $res->header($key) : undef;
            if (!defined $actual) {
                Test::More::fail("$name - header $key ok");
                Test::More::diag("    header $key is absent; expected "
                                 . ($val eq '' ? "it present and empty" : "'$val'")
                                 . "\nraw response headers:\n$raw");
                next;
            }
            Test::More::is($actual, $val, "$name - header $key ok");
        }
    }
    if (defined $block->response_headers_like) {
        my $spec = _get_indexed_value($name, $block->response_headers_like, $idx, $need_array);
        for my $h (_header_lines($spec)) {
            my ($key, $val) = @$h;
            if (!defined $val) {
                Test::More::unlike($raw, qr/^\s*\Q$key\E\s*:/msi,
                                   "$name - header $key not present in the raw headers");
                next;
            }
            $val = _subst_port($val);
            my $actual = $res ? scalar $res->header($key) : undef;
            Test::More::like($actual // '', qr/^$val$/, "$name - header $key like ok")
                or Test::More::diag("raw response headers:\n$raw");
        }
    }
}

sub _check_response_body ($$$$$) {
    my ($block, $res, $idx, $rep, $need_array) = @_;
    my $name = $block->name;
    my $content = $res ? $res->content : undef;
    my $where = "(repeated req $rep, req $idx)";

    if (defined $block->response_body) {
        my $expected = _get_indexed_value($name, $block->response_body, $idx, $need_array);
        if (defined $expected && !ref $expected) {
            $expected = expand_env_in_text(_subst_port($expected), $name);
        }
        if (ref $expected && ref $expected eq 'Regexp') {
            Test::More::like($content, $expected, "$name - response_body - like $where");
        } else {
            Test::More::is($content, $expected,
                           "$name - response_body - response is expected $where");
        }
    } elsif (defined $block->response_body_like || defined $block->response_body_unlike) {
        my $like = defined $block->response_body_like;
        my $pat = _get_indexed_value($name,
            $like ? $block->response_body_like : $block->response_body_unlike,
            $idx, $need_array);
        $pat = _subst_port($pat);
        my $summary = $content // '';
        $summary =~ s/^\s+|\s+$//gs;
        $summary = substr($summary, 0, 200) . '...' if length $summary > 200;
        my $type = $like ? 'like' : 'unlike';
        if ($like) {
            Test::More::like($content, qr/$pat/s,
                "$name - response_body_$type - response is expected ($summary)");
        } else {
            Test::More::unlike($content, qr/$pat/s,
                "$name - response_body_$type - response is expected ($summary)");
        }
    }
    for my $check (@ResponseBodyChecks) {
        $check->($block, $content, $idx, $rep, 0);
    }
}

sub _patterns ($) {
    my $pats = shift;
    return [] unless defined $pats;
    if (!ref $pats) {
        chomp $pats;
        return [split /\n+/, $pats];
    }
    return [$pats] if ref $pats eq 'Regexp';
    return [@$pats] if ref $pats eq 'ARRAY';
    return [$pats];
}

sub _line_matches ($$) {
    my ($line, $pat) = @_;
    return ref $pat ? $line =~ $pat : index($line, $pat) >= 0;
}

sub _value_contains ($$) {
    my ($pats, $s) = @_;
    for my $p (@{ _patterns($pats) }) {
        next unless defined $p;
        return 1 if !ref $p && index($p, $s) >= 0;
        return 1 if ref $p && "$p" =~ /\Q$s\E/;
    }
    return 0;
}

# $given_lines: for must_die (startup output + error.log); otherwise the
# lines of error.log since the last check are read (retrying for up to 1s
# while some --- error_log pattern is still missing).
sub _check_error_log ($$$) {
    my ($block, $given_lines, $rep) = @_;
    my $name = $block->name;
    my $err_pats = _patterns($block->error_log);
    my $no_pats  = _patterns($block->no_error_log);
    my $grep_pats = $block->grep_error_log;

    if (!defined $grep_pats && defined $block->grep_error_log_out) {
        bail_out("$name - No --- grep_error_log defined but --- grep_error_log_out is defined");
    }

    my $lines = $given_lines;
    if (!$lines) {
        sleep(@$no_pats ? 0.1 : 0.05);
        my ($l, $end) = Test::Nginx::Util::error_log_lines();
        my $deadline = time + 1;
        while (grep({ my $p = $_; defined $p && !grep { _line_matches($_, $p) } @$l } @$err_pats)
               && time < $deadline)
        {
            sleep 0.05;
            ($l, $end) = Test::Nginx::Util::error_log_lines();
        }
        $lines = $l;
        $Test::Nginx::Util::ErrLogFilePos = $end;
    }

    if (defined $grep_pats) {
        my $grep_pat = ref $grep_pats eq 'ARRAY' ? $grep_pats->[$rep] : $grep_pats;
        my $expected = $block->grep_error_log_out;
        bail_out("$name - No --- grep_error_log_out defined but --- grep_error_log is defined")
            unless defined $expected;
        $expected = $expected->[$rep] if ref $expected eq 'ARRAY';
        $expected = expand_env_in_text($expected, $name) unless ref $expected;
        my $matched = '';
        for my $line (@$lines) {
            if (ref $grep_pat ? $line =~ /$grep_pat/ : $line =~ /\Q$grep_pat\E/) {
                my $m = $&;
                $matched .= "$m\n" if $m !~ /\n/;
            }
        }
        if (ref $expected eq 'Regexp') {
            Test::More::like($matched, $expected, "$name - grep_error_log_out (req $rep)");
        } else {
            Test::More::is($matched, $expected, "$name - grep_error_log_out (req $rep)");
        }
    }

    if (@$err_pats) {
        my @left = @$err_pats;
        for my $line (@$lines) {
            for my $pat (@left) {
                next unless defined $pat;
                if (_line_matches($line, $pat)) {
                    Test::More::pass("$name - pattern \"" . _fmt($pat)
                                     . "\" matches a line in error.log (req $rep)");
                    undef $pat;
                }
            }
        }
        my $failed;
        for my $pat (@left) {
            next unless defined $pat;
            Test::More::fail("$name - pattern \"" . _fmt($pat)
                             . "\" should match a line in error.log (req $rep)");
            $failed = 1;
        }
        Test::More::diag(($given_lines ? "startup output + error.log"
                                       : "error.log lines checked")
                         . ":\n" . _log_excerpt($lines, 40))
            if $failed;
    }

    if (@$no_pats) {
        my %found;
        for my $i (0 .. $#$lines) {
            my $line = $lines->[$i];
            for my $pat (@$no_pats) {
                next if !defined $pat || $found{$pat};
                if (_line_matches($line, $pat)) {
                    $found{$pat} = 1;
                    my $ctx = join '', @$lines[$i + 1 .. min($i + 5, $#$lines)];
                    Test::More::fail("$name - pattern \"" . _fmt($pat)
                        . "\" should not match any line in error.log but matches line \""
                        . _fmt($line) . "\" (req $rep)");
                    Test::More::diag("following lines:\n$ctx") if length $ctx;
                }
            }
        }
        for my $pat (@$no_pats) {
            next if !defined $pat || $found{$pat};
            Test::More::pass("$name - pattern \"" . _fmt($pat)
                             . "\" does not match a line in error.log (req $rep)");
        }
    }

    return if $given_lines;
    my @all = (@$err_pats, @$no_pats);
    for my $level (qw(alert crit emerg)) {
        next if _value_contains(\@all, "[$level");
        for my $line (@$lines) {
            Test::More::diag("WARNING: $name - $line") if $line =~ /\[$level\]/;
        }
    }
    for my $line (@$lines) {
        if ($line =~ /\bAssertion .*?failed\b/) {
            chomp(my $l = $line);
            Test::More::fail("$name - $l");
        }
    }
}

sub _check_shutdown_error_log ($) {
    my $block = shift;
    my $name = $block->name;
    my $pats = _patterns($block->shutdown_error_log);
    my $no_pats = _patterns($block->no_shutdown_error_log);
    return unless @$pats || @$no_pats;
    my ($lines) = Test::Nginx::Util::error_log_lines();
    my @left = @$pats;
    for my $line (@$lines) {
        for my $pat (@left) {
            next unless defined $pat;
            if (_line_matches($line, $pat)) {
                Test::More::pass("$name - pattern \"" . _fmt($pat) . "\" matches a line in error.log");
                undef $pat;
            }
        }
    }
    for my $pat (grep { defined } @left) {
        Test::More::fail("$name - pattern \"" . _fmt($pat) . "\" should match a line in error.log");
        Test::More::diag("error.log after shutdown:\n" . _log_excerpt($lines));
    }
    for my $pat (@$no_pats) {
        my ($hit) = grep { _line_matches($_, $pat) } @$lines;
        if ($hit) {
            Test::More::fail("$name - pattern \"" . _fmt($pat)
                             . "\" should not match any line in error.log but matches line \""
                             . _fmt($hit) . "\"");
        } else {
            Test::More::pass("$name - pattern \"" . _fmt($pat) . "\" does not match a line in error.log");
        }
    }
}

# A crashed worker is always a failure, unless the block checks for it itself.
sub _check_crash ($$) {
    my ($block, $from) = @_;
    my $name = $block->name;
    my $all = [ @{ _patterns($block->error_log) }, @{ _patterns($block->no_error_log) },
                @{ _patterns($block->shutdown_error_log) } ];
    return if _value_contains($all, 'exited on signal') || _value_contains($all, 'signal');
    my ($lines) = Test::Nginx::Util::error_log_lines($from);
    for my $line (@$lines) {
        if ($line =~ /exited on signal \d+/) {
            chomp(my $l = $line);
            Test::More::fail("$name - nginx process crashed: $l");
        }
    }
}

END {
    # `use Test::Nginx::Socket;` without a plan: behave like 'no_plan'
    if ($$ == $Test::Nginx::Util::MainPid && !$?) {
        my $tb = Test::More->builder;
        if ($tb->current_test && !defined $tb->has_plan) {
            $tb->done_testing;
        }
    }
}

1;
