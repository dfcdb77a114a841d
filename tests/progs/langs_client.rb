# langs_client.rb - Ruby's Net::HTTP in one keep-alive session: GET /big,
# POST /echo with the body file, GET /big. argv: port body-file.
# Prints "RESP N STATUS LENGTH SHA256" for each response, then "DONE".
require 'net/http'
require 'digest'

port = Integer(ARGV[0])
body = File.binread(ARGV[1])
$stdout.sync = true
Net::HTTP.start('127.0.0.1', port, open_timeout: 10, read_timeout: 20, write_timeout: 20) do |http|
  plan = [[:get, '/big'], [:post, '/echo'], [:get, '/big']]
  plan.each_with_index do |(method, path), i|
    res = method == :post ? http.post(path, body, 'Content-Type' => 'application/octet-stream') : http.get(path)
    data = res.body.to_s
    puts "RESP #{i + 1} #{res.code} #{data.bytesize} #{Digest::SHA256.hexdigest(data)}"
  end
end
puts 'DONE'
