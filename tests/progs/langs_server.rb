# langs_server.rb - a Ruby HTTP/1.1 server with a thread per client: TCPServer,
# Thread.new for each accepted socket, buffered reads (gets/read) and keep-alive.
# argv: port body-file.
#   GET /big    -> 200 with the body file
#   POST /echo  -> 200 with the request body sent back
# Prints "READY" once listening, "REQ METHOD PATH LENGTH" for each request and
# "ERR CLASS" when a client's connection fails.
require 'socket'

port = Integer(ARGV[0])
BODY = File.binread(ARGV[1]).freeze
$stdout.sync = true
LOCK = Mutex.new

def say(s)
  LOCK.synchronize { $stdout.write(s + "\n") }
end

def reply(c, data)
  c.write("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n" \
          "Content-Length: #{data.bytesize}\r\n\r\n")
  c.write(data)
end

def serve(c)
  c.binmode
  while (line = c.gets("\r\n"))
    method, path, = line.split(' ')
    len = 0
    close = false
    while (h = c.gets("\r\n")) && h != "\r\n"
      name, value = h.split(':', 2)
      len = Integer(value.strip) if name.casecmp?('content-length')
      close = true if name.casecmp?('connection') && value.strip.casecmp?('close')
    end
    data = len > 0 ? c.read(len) : ''
    if method == 'GET' && path == '/big'
      say("REQ GET /big #{BODY.bytesize}")
      reply(c, BODY)
    elsif method == 'POST' && path == '/echo'
      say("REQ POST /echo #{data.bytesize}")
      reply(c, data)
    else
      say("REQ #{method} #{path} 0")
      c.write("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    end
    break if close
  end
rescue StandardError => e
  say("ERR #{e.class}")
ensure
  c.close
end

server = TCPServer.new('127.0.0.1', port)
say('READY')
loop do
  Thread.new(server.accept) { |c| serve(c) }
end
