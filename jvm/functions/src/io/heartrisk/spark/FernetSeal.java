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
import org.apache.spark.sql.api.java.UDF3;

/**
 * A dead letter's original bytes, sealed as a Fernet token (the spec Python's {@code
 * cryptography.fernet} implements): {@code heartrisk_fernet_seal(bytes, keys_file, key_id)}.
 *
 * <p>The keys file holds one {@code KEY_ID=KEY} a line (a Fernet key: 32 bytes, url-safe base64);
 * the driver names the key that seals (the file's first when the plan was made), every line's
 * opens (so keys rotate). Only the file's path and the key's id travel in the plan: each JVM reads
 * the key itself, once per id, and it never appears in a plan, a log or the Spark UI. Sealing with
 * the named key, not "the first line now", keeps a letter's key_id true when the file is rotated
 * under a running query. Token: 0x80, the time in seconds (8 bytes), a random 16-byte IV, AES-128-CBC with PKCS#7
 * padding under the key's second half, then HMAC-SHA256 of all that under its first half; url-safe
 * base64. A null input gives null. Runs in the JVM, per dead letter, with no Python.
 */
public final class FernetSeal implements UDF3<byte[], String, String, String> {
  private static final long serialVersionUID = 1L;
  public static final String FUNCTION = "heartrisk_fernet_seal";
  private static final byte VERSION = (byte) 0x80;
  private static final SecureRandom RANDOM = new SecureRandom();
  /** (keys file, key id) -> that key (32 bytes), read once per JVM. */
  private static final ConcurrentHashMap<String, byte[]> KEYS = new ConcurrentHashMap<>();

  @Override
  public String call(byte[] data, String keysFile, String keyId) throws GeneralSecurityException {
    if (data == null) {
      return null;
    }
    byte[] key = KEYS.computeIfAbsent(keysFile + "\n" + keyId, k -> namedKey(keysFile, keyId));
    return seal(data, key, System.currentTimeMillis() / 1000);
  }

  /** The key of one id in a keys file (comment lines start with #). */
  static byte[] namedKey(String keysFile, String keyId) {
    try {
      for (String line : Files.readAllLines(Path.of(keysFile), StandardCharsets.UTF_8)) {
        String text = line.strip();
        int eq = text.indexOf('=');
        if (text.startsWith("#") || eq <= 0 || !text.substring(0, eq).strip().equals(keyId)) {
          continue;
        }
        byte[] key = decoded(text.substring(eq + 1).strip());
        if (key == null || key.length != 32) { // the message never quotes the line: it holds a key
          throw new IllegalArgumentException("key " + keyId + " in the keys file is not a Fernet key");
        }
        return key;
      }
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read the dead-letter keys file " + keysFile, e);
    }
    throw new IllegalArgumentException("the dead-letter keys file " + keysFile + " holds no key " + keyId);
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
