# langs_client.pl - Perl's core HTTP::Tiny (keep-alive on by default): GET /big,
# POST /echo with the body file, GET /big. argv: port body-file.
# Prints "RESP N STATUS LENGTH SHA256" for each response, then "DONE".
use strict;
use warnings;
use HTTP::Tiny;
use Digest::SHA qw(sha256_hex);

my ($port, $file) = @ARGV;
open(my $fh, '<:raw', $file) or die "$file: $!";
my $body = do { local $/; <$fh> };
close($fh);
$| = 1;
my $http = HTTP::Tiny->new(keep_alive => 1, timeout => 20);
my $base = "http://127.0.0.1:$port";
my @plan = (['GET', '/big'], ['POST', '/echo'], ['GET', '/big']);
for my $i (0 .. $#plan) {
	my ($method, $path) = @{ $plan[$i] };
	my $res = $http->request($method, "$base$path", $method eq 'POST' ? { content => $body } : {});
	my $data = $res->{content} // '';
	printf "RESP %d %s %d %s\n", $i + 1, $res->{status}, length($data), sha256_hex($data);
	print "REASON $res->{reason} $data\n" if $res->{status} == 599;
}
print "DONE\n";
