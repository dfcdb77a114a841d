// langs_nioecho.java - an echo server on one thread: java.nio ServerSocketChannel
// and SocketChannels, non-blocking, under one Selector. Reads stop while a
// connection has bytes it could not write yet (OP_WRITE until they are gone).
// java langs_nioecho.java PORT. Prints "READY", "CONN" for each connection,
// "CLOSED N" with the bytes echoed when a client ends, "ERR MESSAGE" when a
// read or write fails.
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;

public class LangsNioEcho {
    static final class Conn {
        final ByteBuffer buf = ByteBuffer.allocate(37000); // not a multiple of a record
        long echoed;
    }

    static void say(String s) {
        System.out.println(s);
        System.out.flush();
    }

    public static void main(String[] args) throws Exception {
        Selector sel = Selector.open();
        ServerSocketChannel ls = ServerSocketChannel.open();
        ls.bind(new InetSocketAddress("127.0.0.1", Integer.parseInt(args[0])), 16);
        ls.configureBlocking(false);
        ls.register(sel, SelectionKey.OP_ACCEPT);
        say("READY");
        for (;;) {
            sel.select();
            for (SelectionKey k : sel.selectedKeys()) {
                if (!k.isValid())
                    continue;
                if (k.isAcceptable()) {
                    SocketChannel c = ls.accept();
                    if (c == null)
                        continue;
                    c.configureBlocking(false);
                    c.register(sel, SelectionKey.OP_READ, new Conn());
                    say("CONN");
                    continue;
                }
                SocketChannel c = (SocketChannel) k.channel();
                Conn st = (Conn) k.attachment();
                try {
                    if (k.isReadable()) {
                        int n = c.read(st.buf);
                        if (n < 0) {
                            say("CLOSED " + st.echoed);
                            k.cancel();
                            c.close();
                            continue;
                        }
                    }
                    st.buf.flip();
                    st.echoed += c.write(st.buf);
                    boolean pending = st.buf.hasRemaining();
                    st.buf.compact();
                    k.interestOps(pending ? SelectionKey.OP_WRITE : SelectionKey.OP_READ);
                } catch (IOException e) {
                    say("ERR " + e.getMessage());
                    k.cancel();
                    c.close();
                }
            }
            sel.selectedKeys().clear();
        }
    }
}
