// langs_httpserver.java - the JDK's com.sun.net.httpserver.HttpServer (an NIO
// selector on its dispatcher thread), run as a single-file source program:
// java langs_httpserver.java PORT BODY-FILE default|threads [spawn]. "default"
// runs each exchange on the dispatcher thread (the default executor), "threads"
// on a thread of a cached pool (a thread per exchange). With "spawn", each
// exchange first runs /bin/echo through ProcessBuilder (the JDK's launcher,
// picked by -Djdk.lang.Process.launchMechanism) and prints "CHILD " + its output.
//   GET /big    -> 200 with the body file
//   POST /echo  -> 200 with the request body sent back
// Prints "READY" once listening and "REQ METHOD PATH LENGTH" for each request.
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Executors;

public class LangsHttpServer {
    static synchronized void say(String s) {
        System.out.println(s);
        System.out.flush();
    }

    static void reply(HttpExchange x, byte[] data) throws java.io.IOException {
        x.getResponseHeaders().set("Content-Type", "application/octet-stream");
        x.sendResponseHeaders(200, data.length);
        try (OutputStream o = x.getResponseBody()) {
            o.write(data);
        }
    }

    static boolean spawn;

    static void child() throws java.io.IOException {
        if (!spawn)
            return;
        Process p = new ProcessBuilder("/bin/echo", "spawned").start();
        try {
            say("CHILD " + new String(p.getInputStream().readAllBytes()).trim() + " " + p.waitFor());
        } catch (InterruptedException e) {
            say("CHILD interrupted");
        }
    }

    public static void main(String[] args) throws Exception {
        byte[] body = Files.readAllBytes(Path.of(args[1]));
        spawn = args.length > 3 && args[3].equals("spawn");
        HttpServer s = HttpServer.create(new InetSocketAddress("127.0.0.1", Integer.parseInt(args[0])), 16);
        s.createContext("/big", x -> {
            child();
            say("REQ " + x.getRequestMethod() + " " + x.getRequestURI().getPath() + " " + body.length);
            reply(x, body);
        });
        s.createContext("/echo", x -> {
            byte[] got;
            try (InputStream in = x.getRequestBody()) {
                got = in.readAllBytes();
            }
            child();
            say("REQ " + x.getRequestMethod() + " " + x.getRequestURI().getPath() + " " + got.length);
            reply(x, got);
        });
        if (args.length > 2 && args[2].equals("threads"))
            s.setExecutor(Executors.newCachedThreadPool());
        s.start();
        say("READY");
    }
}
