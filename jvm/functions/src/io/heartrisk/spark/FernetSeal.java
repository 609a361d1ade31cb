package io.heartrisk.spark;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.SecureRandom;
import java.util.Base64;
import java.util.concurrent.ConcurrentHashMap;
import javax.crypto.Cipher;
import javax.crypto.Mac;
import javax.crypto.spec.IvParameterSpec;
import javax.crypto.spec.SecretKeySpec;
import org.apache.spark.sql.api.java.UDF2;

/**
 * A dead letter's original bytes, sealed as a Fernet token (the spec Python's {@code
 * cryptography.fernet} implements): {@code heartrisk_fernet_seal(bytes, keys_file)}.
 *
 * <p>The keys file holds one {@code KEY_ID=KEY} a line (a Fernet key: 32 bytes, url-safe base64);
 * the first line's key seals, every line's opens (so keys rotate). Only the file's path travels
 * in the plan: each JVM reads the key itself, once, and it never appears in a plan, a log or the
 * Spark UI. Token: 0x80, the time in seconds (8 bytes), a random 16-byte IV, AES-128-CBC with PKCS#7
 * padding under the key's second half, then HMAC-SHA256 of all that under its first half; url-safe
 * base64. A null input gives null. Runs in the JVM, per dead letter, with no Python.
 */
public final class FernetSeal implements UDF2<byte[], String, String> {
  private static final long serialVersionUID = 1L;
  public static final String FUNCTION = "heartrisk_fernet_seal";
  private static final byte VERSION = (byte) 0x80;
  private static final SecureRandom RANDOM = new SecureRandom();
  /** keys file -> its first key (32 bytes), read once per JVM. */
  private static final ConcurrentHashMap<String, byte[]> KEYS = new ConcurrentHashMap<>();

  @Override
  public String call(byte[] data, String keysFile) throws GeneralSecurityException {
    if (data == null) {
      return null;
    }
    return seal(data, KEYS.computeIfAbsent(keysFile, FernetSeal::firstKey), System.currentTimeMillis() / 1000);
  }

  /** The first key of a keys file (comment lines start with #). */
  static byte[] firstKey(String keysFile) {
    try {
      for (String line : Files.readAllLines(Path.of(keysFile), StandardCharsets.UTF_8)) {
        String text = line.strip();
        if (text.isEmpty() || text.startsWith("#")) {
          continue;
        }
        int eq = text.indexOf('=');
        byte[] key = eq > 0 ? decoded(text.substring(eq + 1).strip()) : null;
        if (key == null || key.length != 32) { // the message never quotes the line: it holds a key
          throw new IllegalArgumentException("the first line of the keys file is not KEY_ID=<Fernet key>");
        }
        return key;
      }
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read the dead-letter keys file " + keysFile, e);
    }
    throw new IllegalArgumentException("the dead-letter keys file " + keysFile + " holds no key");
  }

  private static byte[] decoded(String text) {
    try {
      return Base64.getUrlDecoder().decode(text);
    } catch (IllegalArgumentException e) {
      return null;
    }
  }

  /** One Fernet token of {@code data} under {@code key} (32 bytes), stamped {@code seconds}. */
  static String seal(byte[] data, byte[] key, long seconds) throws GeneralSecurityException {
    byte[] iv = new byte[16];
    RANDOM.nextBytes(iv);
    Cipher aes = Cipher.getInstance("AES/CBC/PKCS5Padding"); // PKCS#5 is PKCS#7 on 16-byte blocks
    aes.init(Cipher.ENCRYPT_MODE, new SecretKeySpec(key, 16, 16, "AES"), new IvParameterSpec(iv));
    byte[] ciphertext = aes.doFinal(data);
    ByteBuffer body = ByteBuffer.allocate(1 + 8 + 16 + ciphertext.length + 32);
    body.put(VERSION).putLong(seconds).put(iv).put(ciphertext);
    Mac hmac = Mac.getInstance("HmacSHA256");
    hmac.init(new SecretKeySpec(key, 0, 16, "HmacSHA256"));
    hmac.update(body.array(), 0, body.position());
    body.put(hmac.doFinal());
    return Base64.getUrlEncoder().encodeToString(body.array());
  }
}
