# langs_interrupt.rb - Ruby's ways out of a blocked read, each on its own
# connection to a server that never answers (argv: port):
#   Timeout.timeout around IO#read (a timer thread raises into the reader),
#   IO#close from another thread under a reader blocked in readpartial,
#   Thread#raise into a reader blocked in sysread.
# Prints "TIMEOUT", "CLOSE CLASS", "RAISE CLASS": what each reader saw.
require 'socket'
require 'timeout'

$stdout.sync = true
port = Integer(ARGV[0])

def conn(port)
  s = TCPSocket.new('127.0.0.1', port)
  s.write("hello\n")
  s
end

s = conn(port)
begin
  Timeout.timeout(1) { s.read(10) }
  puts 'TIMEOUT none: the read returned'
rescue Timeout::Error
  puts 'TIMEOUT Timeout::Error'
end

s = conn(port)
th = Thread.new do
  s.readpartial(10)
  'returned'
rescue StandardError => e
  e.class.to_s
end
sleep 0.5
s.close
puts "CLOSE #{th.join(10)&.value || 'still blocked'}"

s = conn(port)
th = Thread.new do
  s.sysread(10)
  'returned'
rescue StandardError => e
  e.class.to_s
end
sleep 0.5
th.raise(RuntimeError, 'stop')
puts "RAISE #{th.join(10)&.value || 'still blocked'}"
