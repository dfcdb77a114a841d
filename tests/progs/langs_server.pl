# langs_server.pl - a Perl HTTP/1.1 server that forks per client:
# IO::Socket::INET, accept, fork; the child serves the connection (sysread /
# syswrite, keep-alive) and exits, the parent closes its copy and accepts again.
# argv: port body-file.
#   GET /big    -> 200 with the body file
#   POST /echo  -> 200 with the request body sent back
# Prints "READY" once listening, "REQ METHOD PATH LENGTH" for each request and
# "ERR REASON" when a client's connection fails.
use strict;
use warnings;
use IO::Socket::INET;
use POSIX ();

my ($port, $file) = @ARGV;
open(my $fh, '<:raw', $file) or die "$file: $!";
my $body = do { local $/; <$fh> };
close($fh);
$| = 1;
$SIG{CHLD} = 'IGNORE';

my $ls = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port, Listen => 16,
			       ReuseAddr => 1, Proto => 'tcp') or die "listen: $!";
print "READY\n";

# Fills $$buf until it holds at least $want bytes; 0 at the end of the stream.
sub fill {
	my ($c, $buf, $want) = @_;
	while (length($$buf) < $want) {
		my $n = sysread($c, $$buf, 65536, length($$buf));
		die "read: $!\n" unless defined $n;
		return 0 if $n == 0;
	}
	return 1;
}

sub send_all {
	my ($c, $data) = @_;
	my $off = 0;
	while ($off < length($data)) {
		my $n = syswrite($c, $data, length($data) - $off, $off);
		die "write: $!\n" unless defined $n;
		$off += $n;
	}
}

sub reply {
	my ($c, $data) = @_;
	send_all($c, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
		     . "Content-Length: " . length($data) . "\r\n\r\n");
	send_all($c, $data);
}

sub serve {
	my ($c) = @_;
	my $buf = '';
	for (;;) {
		my $end;
		while (($end = index($buf, "\r\n\r\n")) < 0) {
			return unless fill($c, \$buf, length($buf) + 1);
		}
		my $head = substr($buf, 0, $end + 4, '');
		my ($method, $path) = $head =~ m{^(\S+) (\S+)};
		my ($len) = $head =~ m{\r\ncontent-length:\s*(\d+)}i;
		$len //= 0;
		die "short body\n" if $len && !fill($c, \$buf, $len);
		my $data = substr($buf, 0, $len, '');
		if ($method eq 'GET' && $path eq '/big') {
			print "REQ GET /big ", length($body), "\n";
			reply($c, $body);
		} elsif ($method eq 'POST' && $path eq '/echo') {
			print "REQ POST /echo ", length($data), "\n";
			reply($c, $data);
		} else {
			print "REQ $method $path 0\n";
			send_all($c, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
		}
		return if $head =~ m{\r\nconnection:\s*close}i;
	}
}

for (;;) {
	my $c = $ls->accept() or next;
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0) {
		close($ls);
		eval { serve($c); 1 } or print "ERR $@";
		close($c);
		POSIX::_exit(0);
	}
	close($c);
}
