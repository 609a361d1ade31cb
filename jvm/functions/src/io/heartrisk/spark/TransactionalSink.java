package io.heartrisk.spark;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.AuthorizationException;
import org.apache.kafka.common.errors.OutOfOrderSequenceException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.errors.UnsupportedVersionException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;

/**
 * The exactly-once sink: each micro-batch's output rows and a commit marker in one Kafka transaction.
 *
 * <p>Spark replays an unfinished batch N with the same offsets (its offset log), and only its commit log
 * marks N done; the marker topic is this sink's own record of which batches reached Kafka. So, per query
 * (the id stored in the checkpoint, the same across restarts):
 *
 * <ul>
 *   <li>at open, {@code initTransactions()} with the transactional id {@code heartrisk-<query id>} fences
 *       a driver that was killed and aborts its open transaction; then the markers of this query are read
 *       with {@code read_committed}, which gives the last batch that reached Kafka;
 *   <li>batch N at or below it is skipped (Spark then records it as done): its rows are already there;
 *   <li>any other batch: begin, send every row (topic, key, value, headers as the encode stage made them),
 *       send the marker (key: query id; value: the batch id), commit. An error aborts and fails the batch.
 * </ul>
 *
 * <p>The rows reach the driver one input partition at a time ({@code toLocalIterator}), in the JVM: no
 * row passes through Python. One transaction per batch keeps the skip decision to a single number, so it
 * holds however Spark partitions the replayed batch.
 *
 * <p>{@code HEARTRISK_TEST_CRASH} (tests only): {@code after-commit} or {@code before-commit} halts the
 * JVM, as {@code kill -9} would, at the first transaction with rows, right after its commit, or after its
 * sends and before its commit.
 */
public final class TransactionalSink {
  private static final Map<String, TransactionalSink> OPEN = new ConcurrentHashMap<>();
  private static final Pattern BATCH_ID = Pattern.compile("\"batch_id\":\\s*(-?\\d+)");
  private static final Duration POLL = Duration.ofMillis(200);

  private final String queryId;
  private final String markerTopic;
  private final Map<String, Object> config;
  private final KafkaProducer<byte[], byte[]> producer;
  private final String crash;
  private long lastCommitted;

  private TransactionalSink(String queryId, String markerTopic, Map<String, String> options, String crash) {
    this.queryId = queryId;
    this.markerTopic = markerTopic;
    this.crash = crash == null ? "" : crash;
    this.config = new HashMap<>(options);
    Map<String, Object> producerConfig = new HashMap<>(config);
    producerConfig.put("transactional.id", "heartrisk-" + queryId);  // the same for every restart on one checkpoint
    producerConfig.put("enable.idempotence", "true");
    producerConfig.put("acks", "all");
    producerConfig.put("key.serializer", ByteArraySerializer.class.getName());
    producerConfig.put("value.serializer", ByteArraySerializer.class.getName());
    this.producer = new KafkaProducer<>(producerConfig);
    try {
      producer.initTransactions();
      this.lastCommitted = readLastCommitted();
    } catch (RuntimeException e) {
      producer.close(Duration.ZERO);
      throw e;
    }
  }

  /**
   * The sink of one query, opened once per driver (fencing the previous driver of the same checkpoint).
   *
   * @param options the Kafka client options (without Spark's {@code kafka.} prefix)
   */
  public static TransactionalSink forQuery(String queryId, String markerTopic, Map<String, String> options) {
    return OPEN.computeIfAbsent(
        queryId, id -> new TransactionalSink(id, markerTopic, options, System.getenv("HEARTRISK_TEST_CRASH")));
  }

  private long readLastCommitted() {
    Map<String, Object> consumerConfig = new HashMap<>(config);
    consumerConfig.put("isolation.level", "read_committed");
    consumerConfig.put("enable.auto.commit", "false");
    consumerConfig.put("key.deserializer", ByteArrayDeserializer.class.getName());
    consumerConfig.put("value.deserializer", ByteArrayDeserializer.class.getName());
    byte[] key = queryId.getBytes(StandardCharsets.UTF_8);
    long last = -1;
    try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(consumerConfig)) {
      List<PartitionInfo> infos = consumer.partitionsFor(markerTopic);
      if (infos == null || infos.isEmpty()) {
        throw new KafkaException("the commit-marker topic " + markerTopic + " does not exist");
      }
      List<TopicPartition> partitions = new ArrayList<>();
      for (PartitionInfo p : infos) {
        partitions.add(new TopicPartition(p.topic(), p.partition()));
      }
      consumer.assign(partitions);
      consumer.seekToBeginning(partitions);
      Map<TopicPartition, Long> ends = consumer.endOffsets(partitions);
      while (!reached(consumer, ends)) {
        for (ConsumerRecord<byte[], byte[]> r : consumer.poll(POLL)) {
          if (r.key() != null && Arrays.equals(r.key(), key) && r.value() != null) {
            Matcher m = BATCH_ID.matcher(new String(r.value(), StandardCharsets.UTF_8));
            if (m.find()) {
              last = Math.max(last, Long.parseLong(m.group(1)));
            }
          }
        }
      }
    }
    return last;
  }

  private static boolean reached(KafkaConsumer<byte[], byte[]> consumer, Map<TopicPartition, Long> ends) {
    for (Map.Entry<TopicPartition, Long> e : ends.entrySet()) {
      if (consumer.position(e.getKey()) < e.getValue()) {
        return false;
      }
    }
    return true;
  }

  /**
   * Write one micro-batch (columns topic, key, value, headers) in one transaction.
   *
   * @return the rows written, or -1 when the batch was already committed and is skipped
   */
  public synchronized long write(Dataset<Row> batch, long batchId) {
    if (batchId <= lastCommitted) {
      return -1;
    }
    long rows = 0;
    try {
      producer.beginTransaction();
      Iterator<Row> it = batch.select("topic", "key", "value", "headers").toLocalIterator();
      while (it.hasNext()) {
        producer.send(record(it.next()));
        rows++;
      }
      String marker = "{\"query_id\":\"" + queryId + "\",\"batch_id\":" + batchId + ",\"records\":" + rows
          + ",\"committed_at_ms\":" + System.currentTimeMillis() + "}";
      producer.send(new ProducerRecord<>(markerTopic, queryId.getBytes(StandardCharsets.UTF_8),
          marker.getBytes(StandardCharsets.UTF_8)));
      if (rows > 0 && crash.equals("before-commit")) {
        producer.flush();
        Runtime.getRuntime().halt(137);
      }
      producer.commitTransaction();
    } catch (ProducerFencedException | OutOfOrderSequenceException | AuthorizationException
        | UnsupportedVersionException e) {
      // fatal for this producer: another driver took the checkpoint over, or the broker refuses
      OPEN.remove(queryId, this);
      producer.close(Duration.ZERO);
      throw e;
    } catch (RuntimeException e) {
      try {
        producer.abortTransaction();
      } catch (KafkaException abortFailed) {
        OPEN.remove(queryId, this);
        producer.close(Duration.ZERO);
        e.addSuppressed(abortFailed);
      }
      throw e;
    }
    lastCommitted = batchId;
    if (rows > 0 && crash.equals("after-commit")) {
      Runtime.getRuntime().halt(137);
    }
    return rows;
  }

  private static ProducerRecord<byte[], byte[]> record(Row row) {
    List<Header> headers = new ArrayList<>();
    if (!row.isNullAt(3)) {
      for (Row h : row.<Row>getList(3)) {
        headers.add(new RecordHeader(h.getString(0), h.isNullAt(1) ? null : (byte[]) h.get(1)));
      }
    }
    byte[] key = row.isNullAt(1) ? null : (byte[]) row.get(1);
    return new ProducerRecord<>(row.getString(0), null, key, (byte[]) row.get(2), headers);
  }
}
