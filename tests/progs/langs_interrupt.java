// langs_interrupt.java - Java's ways out of a blocked read, each on its own
// connection to a server that never answers (java langs_interrupt.java PORT):
// Socket.close() and SocketChannel.close() from another thread (an async close:
// the JDK dup2()s a dead socket over the fd and signals the reader), and
// Thread.interrupt() of a reader blocked in SocketChannel.read. Prints
// "SOCKET ...", "CHANNEL ...", "INTERRUPT ..." with what each reader saw, and
// whether it was still blocked 10 s later.
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;

public class LangsInterrupt {
    interface Read {
        void run() throws IOException;
    }

    static void blockedRead(String what, Read r, Runnable stop) throws Exception {
        String[] seen = {"returned"};
        Thread t = new Thread(() -> {
            try {
                r.run();
            } catch (IOException e) {
                seen[0] = e.getClass().getName();
            }
        });
        t.start();
        Thread.sleep(500);
        stop.run();
        t.join(10000);
        System.out.println(what + " " + (t.isAlive() ? "still blocked" : seen[0]));
    }

    public static void main(String[] args) throws Exception {
        InetSocketAddress addr = new InetSocketAddress("127.0.0.1", Integer.parseInt(args[0]));
        byte[] hello = "hello\n".getBytes();

        Socket s = new Socket(addr.getAddress(), addr.getPort());
        s.getOutputStream().write(hello);
        blockedRead("SOCKET", () -> s.getInputStream().read(), () -> {
            try {
                s.close();
            } catch (IOException e) {
                System.out.println("close: " + e);
            }
        });

        SocketChannel c = SocketChannel.open(addr);
        c.write(ByteBuffer.wrap(hello));
        blockedRead("CHANNEL", () -> c.read(ByteBuffer.allocate(10)), () -> {
            try {
                c.close();
            } catch (IOException e) {
                System.out.println("close: " + e);
            }
        });

        SocketChannel c3 = SocketChannel.open(addr);
        c3.write(ByteBuffer.wrap(hello));
        Thread[] reader = new Thread[1];
        blockedRead("INTERRUPT", () -> {
            reader[0] = Thread.currentThread();
            c3.read(ByteBuffer.allocate(10));
        }, () -> reader[0].interrupt());
        System.exit(0);
    }
}
