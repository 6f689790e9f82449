package Test::Nginx::Socket::Lua::Stream;

# Alias of Test::Nginx::Socket: this runner handles the stream sections (stream_config,
# stream_server_config, stream_request, stream_response, stream_response_like) itself,
# sending the stream request directly instead of through a Lua location as
# openresty/test-nginx's Test::Nginx::Socket::Lua::Stream does.

use strict;
use warnings;

use Test::Nginx::Socket ();

our $VERSION = $Test::Nginx::Socket::VERSION;
our @EXPORT = @Test::Nginx::Socket::EXPORT;

sub import {
    shift;
    unshift @_, 'Test::Nginx::Socket';
    goto &Test::Nginx::Socket::import;
}

1;
