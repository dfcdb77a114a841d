# langs_interrupt.pl - Perl's way out of a blocked read: alarm with a $SIG{ALRM}
# handler that dies (safe signals: the read returns EINTR and the handler runs).
# argv: port, of a server that never answers. Prints "CAUGHT timeout AFTER S"
# or "READ N" if the read returned.
use strict;
use warnings;
use IO::Socket::INET;

$| = 1;
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ARGV[0])
    or die "connect: $!";
syswrite($s, "hello\n") or die "write: $!";
my $t0 = time;
my $r = eval {
	local $SIG{ALRM} = sub { die "timeout\n" };
	alarm 2;
	my $n = sysread($s, my $buf, 100);
	alarm 0;
	"READ " . ($n // "undef $!");
};
if (defined $r) {
	print "$r\n";
} else {
	chomp(my $e = $@);
	printf "CAUGHT %s AFTER %d\n", $e, time - $t0;
}
