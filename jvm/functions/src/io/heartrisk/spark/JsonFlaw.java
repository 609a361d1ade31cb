package io.heartrisk.spark;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import java.io.IOException;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import org.apache.spark.sql.api.java.UDF1;
import org.apache.spark.sql.catalyst.json.JSONOptions;
import scala.jdk.javaapi.CollectionConverters;

/**
 * What a strict JSON reader finds wrong with a message that Spark's {@code from_json} reads.
 *
 * <p>Called as {@code heartrisk_json_flaw(text)}. Spark's reader stops at the end of the first
 * JSON value and ignores what follows ({@code {...} trailing}), and keeps one of the values of a
 * field named twice ({@code {"Age": 54, "Age": "x"}}), so either would be scored. This reads the
 * whole text once more with Spark's own Jackson factory (built from the decode step's options, so
 * both readers accept the same syntax and limits) and answers:
 *
 * <ul>
 *   <li>{@code null}: one JSON value, nothing but white space after it, and no field of the root
 *       object named twice;
 *   <li>{@code SYNTAX}: the first value does not parse (or there is none);
 *   <li>{@code TRAILING}: the first value is followed by more than white space;
 *   <li>{@code DUPLICATE}: a field of the root object is named twice (after unescaping).
 * </ul>
 *
 * <p>The decode step maps these to NOT_JSON and DUPLICATE_FIELD, only where Spark's own reading
 * found no error first. Runs in the JVM, per row, with no Python.
 */
public final class JsonFlaw implements UDF1<String, String> {
  private static final long serialVersionUID = 1L;
  public static final String FUNCTION = "heartrisk_json_flaw";
  public static final String SYNTAX = "SYNTAX";
  public static final String TRAILING = "TRAILING";
  public static final String DUPLICATE = "DUPLICATE";

  /** One factory per JVM (executor): thread-safe, and costly to build. */
  private static final class Factory {
    static final JsonFactory INSTANCE = build();

    private static JsonFactory build() {
      Map<String, String> options = new HashMap<>();
      options.put("allowSingleQuotes", "false"); // as stream.pipeline.decode.STRICT_JSON
      scala.collection.immutable.Map<String, String> scalaOptions =
          scala.collection.immutable.Map.from(CollectionConverters.asScala(options));
      return new JSONOptions(scalaOptions, "UTC", "").buildJsonFactory();
    }
  }

  @Override
  public String call(String text) {
    return flaw(text);
  }

  /** Nothing but white space after the first value (a token there, or a character no token starts with: no). */
  private static boolean endsHere(JsonParser p) {
    try {
      return p.nextToken() == null;
    } catch (IOException e) {
      return false;
    }
  }

  /** The flaw of one text, or null (see the class comment). */
  public static String flaw(String text) {
    if (text == null) {
      return null;
    }
    try (JsonParser p = Factory.INSTANCE.createParser(text)) {
      JsonToken t = p.nextToken();
      if (t == null) {
        return SYNTAX; // nothing but white space
      }
      boolean duplicate = false;
      if (t == JsonToken.START_OBJECT) {
        Set<String> names = new HashSet<>();
        while ((t = p.nextToken()) == JsonToken.FIELD_NAME) {
          duplicate |= !names.add(p.currentName());
          p.nextToken();
          p.skipChildren();
        }
        if (t != JsonToken.END_OBJECT) {
          return SYNTAX;
        }
      } else {
        p.skipChildren();
      }
      if (!endsHere(p)) {
        return TRAILING;
      }
      return duplicate ? DUPLICATE : null;
    } catch (IOException e) { // JsonParseException, StreamConstraintsException
      return SYNTAX;
    }
  }
}
