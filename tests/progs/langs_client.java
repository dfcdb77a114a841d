// langs_client.java - Java's two standard HTTP clients, run as a single-file
// source program (java langs_client.java PORT BODY-FILE): java.net.http.HttpClient
// (NIO, its own selector thread) and HttpURLConnection (blocking sockets, its
// keep-alive cache). Each does GET /big, POST /echo with the body file, GET /big
// over HTTP/1.1, and prints "RESP CLIENT N STATUS LENGTH SHA256"; then "DONE".
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.URI;
import java.net.URL;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;

public class LangsClient {
    static String sha256(byte[] b) throws Exception {
        StringBuilder s = new StringBuilder();
        for (byte x : MessageDigest.getInstance("SHA-256").digest(b))
            s.append(String.format("%02x", x));
        return s.toString();
    }

    static void say(String client, int n, int status, byte[] b) throws Exception {
        System.out.println("RESP " + client + " " + n + " " + status + " " + b.length + " " + sha256(b));
    }

    public static void main(String[] args) throws Exception {
        String base = "http://127.0.0.1:" + args[0];
        byte[] body = Files.readAllBytes(Path.of(args[1]));
        String[][] plan = {{"GET", "/big"}, {"POST", "/echo"}, {"GET", "/big"}};

        HttpClient hc = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(Duration.ofSeconds(10)).build();
        for (int i = 0; i < plan.length; i++) {
            HttpRequest.Builder rb = HttpRequest.newBuilder(URI.create(base + plan[i][1]))
                    .timeout(Duration.ofSeconds(20));
            if (plan[i][0].equals("POST"))
                rb.POST(HttpRequest.BodyPublishers.ofByteArray(body));
            HttpResponse<byte[]> r = hc.send(rb.build(), HttpResponse.BodyHandlers.ofByteArray());
            say("httpclient", i + 1, r.statusCode(), r.body());
        }

        for (int i = 0; i < plan.length; i++) {
            HttpURLConnection c = (HttpURLConnection) new URL(base + plan[i][1]).openConnection();
            c.setConnectTimeout(10000);
            c.setReadTimeout(20000);
            c.setRequestMethod(plan[i][0]);
            if (plan[i][0].equals("POST")) {
                c.setDoOutput(true);
                c.setFixedLengthStreamingMode(body.length);
                try (OutputStream o = c.getOutputStream()) {
                    o.write(body);
                }
            }
            int status = c.getResponseCode();
            ByteArrayOutputStream got = new ByteArrayOutputStream();
            try (InputStream in = c.getInputStream()) {
                in.transferTo(got);
            }
            say("urlconnection", i + 1, status, got.toByteArray());
        }
        System.out.println("DONE");
        System.exit(0);
    }
}
